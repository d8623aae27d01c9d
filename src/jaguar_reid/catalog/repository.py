"""All of the catalogue's SQL: reads, and the write transactions that bump the change counter.

Every write goes through ``Repository.transaction()``, which adds one to ``catalog_info.changes``
in the same transaction; an open catalogue compares that counter with the one its gallery was
read at, so it sees another process's edits (a rename, a merge, a decision) before it identifies.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from sqlalchemy import Integer, String, cast, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from ..errors import CatalogError
from .database import now
from .schema import (
    Status,
    catalog_info,
    decisions,
    embeddings,
    images,
    individuals,
    models,
)


class Repository:
    """The catalogue's tables behind one database engine (``db``)."""

    def __init__(self, db: Engine, name: str):
        self.db, self.name = db, name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction; it bumps the change counter (all or nothing with the write)."""
        with self.db.begin() as connection:
            yield connection
            connection.execute(update(catalog_info).where(catalog_info.c.key == "changes")
                               .values(value=cast(cast(catalog_info.c.value, Integer) + 1, String)))

    # ---- catalogue info and models -------------------------------------------------------------

    def info(self, key: str) -> str | None:
        """A ``catalog_info`` value (schema_version, image_store, active_model, changes, ...), or None."""
        with self.db.connect() as connection:
            return connection.scalar(select(catalog_info.c.value).where(catalog_info.c.key == key))

    def changes(self) -> int:
        """How many write transactions the catalogue has seen."""
        return int(self.info("changes") or 0)

    @staticmethod
    def set_info(connection: Connection, key: str, value: str) -> None:
        """Set a ``catalog_info`` value inside a write transaction."""
        if connection.execute(update(catalog_info).where(catalog_info.c.key == key).values(value=value)).rowcount == 0:
            connection.execute(insert(catalog_info).values(key=key, value=value))

    def active_model(self) -> dict:
        """The active model's row (fingerprint, runs, dim, open_set, ...)."""
        fingerprint = self.info("active_model")
        with self.db.connect() as connection:
            row = connection.execute(select(models).where(models.c.fingerprint == fingerprint)).mappings().first()
        if row is None:
            raise CatalogError(f"{self.name}: no model bound; bind one with: jaguar-reid catalog create ... --run RUN")
        return dict(row)

    def model_ids(self) -> list[int]:
        """Ids of every bound model (each photo is embedded under all of them)."""
        with self.db.connect() as connection:
            return list(connection.scalars(select(models.c.id)))

    def model_rows(self) -> list[dict]:
        """Every bound model's row."""
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(select(models)).mappings()]

    @staticmethod
    def model_id(connection: Connection, fingerprint: str, runs: list[str], dim: int, open_set: dict) -> int:
        """The model row of ``fingerprint``, inserted if new; a bound one takes the (re)calibration given."""
        found = connection.scalar(select(models.c.id).where(models.c.fingerprint == fingerprint))
        if found is not None:
            connection.execute(update(models).where(models.c.id == found).values(open_set=json.dumps(open_set)))
            return found
        return connection.execute(insert(models).values(
            fingerprint=fingerprint, runs=json.dumps(runs), dim=dim, open_set=json.dumps(open_set),
            created_at=now())).inserted_primary_key[0]

    @staticmethod
    def put_embeddings(connection: Connection, model_id: int, image_ids: list[int], vectors: np.ndarray,
                       replace: bool = False) -> None:
        """Store (N, D) float32 vectors of ``image_ids`` under the model (``replace``: its existing ones first)."""
        if replace:
            connection.execute(embeddings.delete().where(embeddings.c.model_id == model_id,
                                                         embeddings.c.image_id.in_(image_ids)))
        if image_ids:
            connection.execute(insert(embeddings), [{"image_id": i, "model_id": model_id, "vector": _blob(v)}
                                                    for i, v in zip(image_ids, vectors)])

    # ---- photos --------------------------------------------------------------------------------

    def image_rows(self) -> list[dict]:
        """Every photo's row, by id."""
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(select(images).order_by(images.c.id)).mappings()]

    def image(self, image_id: int) -> dict:
        """A photo's row by id; a one-line error if there is none."""
        with self.db.connect() as connection:
            row = connection.execute(select(images).where(images.c.id == image_id)).mappings().first()
        if row is None:
            raise CatalogError(f"#{image_id}: no such photo in {self.name}")
        return dict(row)

    def images_where(self, where, limit: int = 2) -> list[dict]:
        """Up to ``limit`` photo rows matching a SQLAlchemy condition."""
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(select(images).where(where).limit(limit)).mappings()]

    def names_by_hash(self, hashes: list[str]) -> dict[str, str]:
        """Original names of the catalogue photos among ``hashes`` (sha256 -> name)."""
        with self.db.connect() as connection:
            return dict(connection.execute(select(images.c.sha256, images.c.original_name)
                                           .where(images.c.sha256.in_(hashes))).all())

    @staticmethod
    def insert_image(connection: Connection, row: dict) -> int:
        """Insert a photo row; returns its id."""
        return connection.execute(insert(images).values(**row)).inserted_primary_key[0]

    @staticmethod
    def set_crop(connection: Connection, image_id: int, box: dict) -> None:
        """Set (or clear, all None) a photo's crop columns."""
        connection.execute(update(images).where(images.c.id == image_id).values(**box))

    def stored_vectors(self, model_id: int, hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors already stored under the model for the photos among ``hashes`` (sha256 -> (D,))."""
        with self.db.connect() as connection:
            rows = connection.execute(
                select(images.c.sha256, embeddings.c.vector).join(embeddings, embeddings.c.image_id == images.c.id)
                .where(embeddings.c.model_id == model_id, images.c.sha256.in_(hashes))).all()
        return {sha256: np.frombuffer(vector, dtype=np.float32) for sha256, vector in rows}

    def gallery_rows(self, model_id: int) -> list:
        """Identified photos with their individual's name and their vector under the model, by id."""
        with self.db.connect() as connection:
            return connection.execute(
                select(images.c.sha256, images.c.original_name, images.c.stored_path, individuals.c.name,
                       embeddings.c.vector)
                .join(individuals, images.c.individual_id == individuals.c.id)
                .join(embeddings, (embeddings.c.image_id == images.c.id) & (embeddings.c.model_id == model_id))
                .where(images.c.status == Status.KNOWN).order_by(images.c.id)).all()

    def queue(self, after: int = 0, limit: int = 1) -> list[dict]:
        """Queued photos with ids above ``after``, oldest first."""
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(
                select(images).where(images.c.status == Status.QUEUED, images.c.id > after)
                .order_by(images.c.id).limit(limit)).mappings()]

    def known_photos(self) -> list[dict]:
        """Identified photos with their individual's name (``individual``), by id."""
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(
                select(images, individuals.c.name.label("individual"))
                .join(individuals, images.c.individual_id == individuals.c.id)
                .where(images.c.status == Status.KNOWN).order_by(images.c.id)).mappings()]

    # ---- individuals ---------------------------------------------------------------------------

    def individuals(self) -> list[dict]:
        """Unmerged individuals with identified photos: id, name, notes, photo count, a cover sha256."""
        count = func.count(images.c.id)
        with self.db.connect() as connection:
            return [dict(r) for r in connection.execute(
                select(individuals.c.id, individuals.c.name, individuals.c.notes, count.label("photos"),
                       func.min(images.c.sha256).label("cover"))
                .join(images, (images.c.individual_id == individuals.c.id) & (images.c.status == Status.KNOWN))
                .where(individuals.c.merged_into.is_(None)).group_by(individuals.c.id)
                .order_by(individuals.c.name)).mappings()]

    def individual(self, name: str) -> dict:
        """One individual's row with its identified photos (newest first)."""
        with self.db.connect() as connection:
            found = self.individual_id(connection, name)
            row = dict(connection.execute(select(individuals).where(individuals.c.id == found)).mappings().one())
            row["photos"] = [dict(r) for r in connection.execute(
                select(images).where(images.c.individual_id == found, images.c.status == Status.KNOWN)
                .order_by(images.c.id.desc())).mappings()]
        return row

    def individual_id(self, connection: Connection, name: str) -> int:
        """The id of the (unmerged) individual ``name``; a one-line error with the closest name otherwise."""
        found = connection.scalar(select(individuals.c.id).where(individuals.c.name == name,
                                                                 individuals.c.merged_into.is_(None)))
        if found is None:
            names = connection.scalars(select(individuals.c.name).where(individuals.c.merged_into.is_(None))).all()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CatalogError(f"no individual named {name!r} in {self.name}; {hint}a new one needs a new-individual decision")
        return found

    def new_individual(self, connection: Connection, name: str) -> int:
        """A new individual's id (a name whose photos were all undone or moved away is free again)."""
        name = name.strip()
        if not name:
            raise CatalogError("a new individual needs a name")
        found = connection.scalar(select(individuals.c.id).where(individuals.c.name == name))
        if found is not None:
            photos = connection.scalar(select(func.count()).select_from(images).where(images.c.individual_id == found))
            merged = connection.scalar(select(individuals.c.merged_into).where(individuals.c.id == found))
            if photos == 0 and merged is None:
                return found
            raise CatalogError(f"an individual named {name!r} already exists in {self.name}; assign the photo to it instead")
        return connection.execute(insert(individuals).values(name=name, notes="", created_at=now())).inserted_primary_key[0]

    @staticmethod
    def individual_ids(connection: Connection, names: set[str]) -> tuple[dict[str, int], list[str]]:
        """Ids of the named individuals, creating those that do not exist; and the names created."""
        ids = dict(connection.execute(select(individuals.c.name, individuals.c.id)
                                      .where(individuals.c.name.in_(sorted(names)))).all())
        created = sorted(names - set(ids))
        for name in created:
            ids[name] = connection.execute(insert(individuals).values(name=name, notes="", created_at=now())).inserted_primary_key[0]
        return ids, created

    # ---- the decision log and counts -----------------------------------------------------------

    def latest_decisions(self) -> dict[int, tuple[str, str]]:
        """Photo id -> (who, when) of the latest decision on it."""
        with self.db.connect() as connection:
            rows = connection.execute(select(decisions.c.image_id, decisions.c.who, decisions.c.at)
                                      .where(decisions.c.image_id.is_not(None)).order_by(decisions.c.id)).all()
        return {image_id: (who, at) for image_id, who, at in rows}

    def last_decision(self) -> dict | None:
        """The newest decision that is not an undo and was not undone (what "undo last" takes back), as in the log."""
        undone = select(decisions.c.undoes).where(decisions.c.undoes.is_not(None))
        with self.db.connect() as connection:
            found = connection.scalar(select(decisions.c.id).where(decisions.c.decision != "undo", decisions.c.id.not_in(undone))
                                      .order_by(decisions.c.id.desc()).limit(1))
        return None if found is None else self.decision(found)

    def decision(self, decision_id: int) -> dict | None:
        """One entry of the decision log by id (as ``decision_log`` gives it), or None."""
        rows = self.decision_log(where=decisions.c.id == decision_id)
        return rows[0] if rows else None

    def decision_log(self, limit: int | None = None, where=None) -> list[dict]:
        """The decision log, newest first, with each photo's name and sha256, the individual's name and a ``summary``."""
        query = (select(decisions, images.c.original_name, images.c.sha256, individuals.c.name.label("individual"))
                 .outerjoin(images, decisions.c.image_id == images.c.id)
                 .outerjoin(individuals, decisions.c.individual_id == individuals.c.id).order_by(decisions.c.id.desc()))
        if where is not None:
            query = query.where(where)
        with self.db.connect() as connection:
            rows = [dict(r) for r in connection.execute(query.limit(limit) if limit else query).mappings()]
        for row in rows:
            row["summary"] = _summary(row)
        return rows

    def stats(self, store_root) -> dict:
        """Counts: individuals (with identified photos), photos by status, photos per individual, models, decisions."""
        with self.db.connect() as connection:
            by_status = dict(connection.execute(select(images.c.status, func.count()).group_by(images.c.status)).all())
            per_individual = list(connection.scalars(
                select(func.count()).select_from(images).where(images.c.status == Status.KNOWN).group_by(images.c.individual_id)))
            n_decisions = connection.scalar(select(func.count()).select_from(decisions))
        active = self.info("active_model")
        return {
            "catalogue": self.name, "schema_version": int(self.info("schema_version")),
            "image_store": str(store_root), "individuals": len(per_individual),
            "photos_known": by_status.get(Status.KNOWN, 0), "photos_queued": by_status.get(Status.QUEUED, 0),
            "photos_rejected": by_status.get(Status.REJECTED, 0),
            "photos_per_individual": {"min": int(min(per_individual, default=0)),
                                      "median": float(np.median(per_individual)) if per_individual else 0.0,
                                      "max": int(max(per_individual, default=0))},
            "decisions": n_decisions,
            "models": [{"fingerprint": m["fingerprint"], "runs": json.loads(m["runs"]), "active": m["fingerprint"] == active,
                        "threshold": json.loads(m["open_set"])["threshold"]} for m in self.model_rows()],
        }


def _summary(row: dict) -> str:
    """A decision in words, e.g. "known Ipepo", "renamed Bororo to Bororo-M03", "undo of #12"."""
    detail = json.loads(row["detail"] or "{}")
    if row["decision"] == "rename":
        return f"renamed {detail['old']} to {detail['new']}"
    if row["decision"] == "merge":
        return f"merged {detail['source']} into {detail['target']}"
    if row["decision"] == "undo":
        return f"undo of #{row['undoes']}" + (f" (back to {row['individual']})" if row["individual"] else "")
    return row["decision"] + (f" {row['individual']}" if row["individual"] else "")


def _blob(vector) -> bytes:
    return np.asarray(vector, np.float32).tobytes()
