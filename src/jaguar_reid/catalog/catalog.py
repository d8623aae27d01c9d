"""``Catalog``: a team's known animals, their photos and embeddings, and every decision made.

>>> catalog = Catalog.create("catalog.db", runs=["runs/lite0"])                 # doctest: +SKIP
>>> catalog.add("photos/", labels="known.csv")                                  # doctest: +SKIP
>>> [r.verdict for r in catalog.identify(["new_photo.jpg"])]                    # doctest: +SKIP
>>> catalog.decide("new_photo.jpg", as_name="Bagheera")                         # doctest: +SKIP

Every change is one database transaction: photos are checked, embedded and copied into the
content-addressed store first, then the rows are written together, so an interrupted import
leaves the catalogue as it was (a copied photo without its row is harmless and is reused when
the import is run again).
"""

from __future__ import annotations

import difflib
import getpass
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from ..errors import CatalogError, DataError
from ..evaluation.open_set import GalleryBlocks, OpenSetCalibration, decision_scores, individual_scores
from .database import check_version, connect, create_schema, display_name, is_url, now, upgrade_schema
from .schema import catalog_info, decisions, embeddings, images, individuals, models
from .search import EmbeddingIndex
from .store import ImageStore, PhotoFile, check_photo

KNOWN, QUEUED, REJECTED = "known", "queued", "rejected"
_METADATA_COLUMNS = {"side": ("side", "flank"), "date": ("date", "datetime", "timestamp"), "location": ("location", "site", "station")}


@dataclass
class Candidate:
    """One individual proposed for a photo."""

    individual: str
    score: float  # from its photos' cosine similarities (max, or mean of the top k)
    decision_score: float  # what the threshold and the probability read (see evaluation.open_set.decision_scores)
    probability: float
    photos: list[dict]  # its best-matching catalogue photos: sha256, original_name, path, similarity


@dataclass
class Identification:
    """The answer for one photo: ranked candidates and the verdict (``known`` or ``new``)."""

    photo: str
    sha256: str | None
    verdict: str
    individual: str | None
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class AddReport:
    added: int = 0
    labelled: int = 0
    queued: int = 0
    new_individuals: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (photo, the catalogue photo it repeats)


def default_who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Catalog:
    """A catalogue at a SQLite path or database URL, with its photo store."""

    def __init__(self, location: str | Path, device: str = "auto", engine: str = "auto"):
        self.location, self.name, self.device, self.inference = location, display_name(location), device, engine
        if not is_url(location) and not Path(location).is_file():
            raise CatalogError(f"{location}: no catalogue here (create one with: jaguar-reid catalog create {location} --run RUN)")
        self.engine = connect(location)
        check_version(self.engine, self.name)
        self.store = ImageStore(self._store_root())
        self._embedder = None
        self._gallery = None

    # ---- creating and opening ----------------------------------------------------------------

    @classmethod
    def create(cls, location: str | Path, runs, store: str | Path | None = None, device: str = "auto",
               engine: str = "auto") -> Catalog:
        """A new catalogue bound to trained run(s) (several: an ensemble). Photos go to ``store``
        (default for a SQLite file ``catalog.db``: ``catalog_images/`` beside it; a URL needs one).
        ``engine``: torch, onnx (onnxruntime on the CPU) or auto (onnx when the device is the CPU)."""
        if not is_url(location) and Path(location).exists():
            raise CatalogError(f"{location}: already exists (open it, or choose another path)")
        if store is None and is_url(location):
            raise CatalogError(f"{display_name(location)}: a database URL needs --store DIR for the photos")
        if not runs:
            raise CatalogError("a catalogue needs a trained run (--run RUN)")
        stored = str(Path(store).resolve()) if store is not None else f"{Path(location).stem}_images"
        database = connect(location)
        create_schema(database, {"image_store": stored}, display_name(location))
        database.dispose()
        catalog = cls(location, device, engine)
        try:
            catalog.bind(runs)
        except BaseException:
            catalog.engine.dispose()
            if not is_url(location):
                Path(location).unlink(missing_ok=True)
            raise
        return catalog

    @staticmethod
    def upgrade(location: str | Path) -> tuple[int, int]:
        """Bring an older catalogue's schema up to date; returns (old version, new version)."""
        return upgrade_schema(connect(location), display_name(location))

    def _info(self, key: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(catalog_info.c.value).where(catalog_info.c.key == key))

    def _store_root(self) -> Path:
        root = Path(self._info("image_store"))
        return root if root.is_absolute() else Path(self.location).resolve().parent / root

    # ---- models --------------------------------------------------------------------------------

    def bind(self, runs) -> str:
        """Embed every catalogue photo with the run(s) and make them the active model; returns its fingerprint."""
        from ..evaluation.evaluate import calibrate_run
        from ..inference.embedder import Embedder
        from ..runs import Run

        runs = [r if isinstance(r, Run) else Run(r) for r in ([runs] if isinstance(runs, (str, Path, Run)) else runs)]
        fingerprint = _ensemble_fingerprint(runs)
        embedder = Embedder.from_runs(runs, device=self.device, cache=False, engine=self.inference)
        calibration = runs[0].open_set if len(runs) == 1 else None
        if calibration is None:
            calibration = calibrate_run(runs[0], embedder=embedder, save=len(runs) == 1)
        rows = self._image_rows()
        vectors = self._embed(embedder, [self._model_input(r._mapping) for r in rows])
        with self.engine.begin() as connection:
            model_id = connection.scalar(select(models.c.id).where(models.c.fingerprint == fingerprint))
            if model_id is None:
                model_id = connection.execute(insert(models).values(
                    fingerprint=fingerprint, runs=json.dumps([str(r.path.resolve()) for r in runs]), dim=vectors.shape[1],
                    open_set=json.dumps(calibration.to_json()), created_at=now())).inserted_primary_key[0]
            connection.execute(embeddings.delete().where(embeddings.c.model_id == model_id))
            _insert_embeddings(connection, model_id, [r.id for r in rows], vectors)
            _set_info(connection, "active_model", fingerprint)
        self._embedder, self._gallery = (fingerprint, embedder), None
        return fingerprint

    def _model_input(self, image: dict):
        """What a photo is embedded from: its file, or the crop of it when a crop box is set."""
        path = self.store.path(image["stored_path"])
        if image["crop_left"] is None:
            return path
        from PIL import Image, ImageOps

        with Image.open(path) as opened:
            opened.load()
            upright = ImageOps.exif_transpose(opened)  # the box is in the photo as displayed
        return upright.crop((image["crop_left"], image["crop_top"], image["crop_right"], image["crop_bottom"]))

    def crop(self, photo, box: tuple[float, float, float, float] | None) -> dict:
        """Set the crop box (left, top, right, bottom, in pixels of the upright photo) around the animal
        in a loose camera-trap frame, or clear it (``None``); the photo is embedded again from the
        crop under every bound model, in one transaction. Returns the photo's row."""
        image = self.find_image(photo)
        if box is not None:
            left, top, right, bottom = (float(v) for v in box)
            if not (0 <= left < right <= image["width"] and 0 <= top < bottom <= image["height"]):
                raise CatalogError(f"{image['original_name']}: crop box {box} is not inside the "
                                   f"{image['width']}x{image['height']} photo")
            if right - left < 16 or bottom - top < 16:
                raise CatalogError(f"{image['original_name']}: crop box {box} is smaller than 16 pixels")
            box = (left, top, right, bottom)
        image.update(zip(("crop_left", "crop_top", "crop_right", "crop_bottom"), box or (None,) * 4))
        with self.engine.connect() as connection:
            model_ids = connection.scalars(select(models.c.id)).all()
        vectors = {model_id: self._embed(self._embedder_for(model_id), [self._model_input(image)]) for model_id in model_ids}
        with self.engine.begin() as connection:
            connection.execute(update(images).where(images.c.id == image["id"]).values(
                crop_left=image["crop_left"], crop_top=image["crop_top"], crop_right=image["crop_right"],
                crop_bottom=image["crop_bottom"]))
            for model_id, vector in vectors.items():
                connection.execute(update(embeddings).where(embeddings.c.image_id == image["id"], embeddings.c.model_id == model_id)
                                   .values(vector=np.asarray(vector[0], np.float32).tobytes()))
        self._gallery = None
        return image

    def _embed(self, embedder, paths: list[Path]) -> np.ndarray:
        if paths:
            return embedder.embed(paths)
        import torch

        size = embedder.members[0].preprocessing.image_size
        return embedder.embed(torch.zeros(1, 3, size, size))[:0]

    def _active_model(self) -> dict:
        fingerprint = self._info("active_model")
        with self.engine.connect() as connection:
            row = connection.execute(select(models).where(models.c.fingerprint == fingerprint)).mappings().first()
        if row is None:
            raise CatalogError(f"{self.name}: no model bound; bind one with: jaguar-reid catalog create ... --run RUN")
        return dict(row)

    @property
    def calibration(self) -> OpenSetCalibration:
        return OpenSetCalibration.from_json(json.loads(self._active_model()["open_set"]))

    @property
    def embedder(self):
        """The active model's ``Embedder``, after checking its runs still hold the weights the catalogue was embedded with."""
        from ..inference.embedder import Embedder
        from ..runs import Run

        model = self._active_model()
        if self._embedder is None or self._embedder[0] != model["fingerprint"]:
            runs = [Run(path) for path in json.loads(model["runs"])]
            found = _ensemble_fingerprint(runs)
            if found != model["fingerprint"]:
                raise CatalogError(
                    f"{self.name}: the catalogue's photos were embedded by model {model['fingerprint']}, but "
                    f"{', '.join(map(str, (r.path for r in runs)))} now holds model {found}; bind it again with: "
                    f"jaguar-reid catalog bind {self.name} --run RUN")
            self._embedder = (found, Embedder.from_runs(runs, device=self.device, cache=False, engine=self.inference))
        return self._embedder[1]

    # ---- adding photos -----------------------------------------------------------------------------

    def add(self, photos, labels: str | Path | None = None, metadata: str | Path | None = None,
            who: str | None = None, names: list[str] | None = None) -> AddReport:
        """Add a folder (or list) of photos: those named in ``labels`` (filename,ground_truth) as known
        individuals, the rest queued for review. ``metadata`` (filename plus side/date/location and
        any other columns) is stored with them. Duplicates (same content) are reported and skipped.
        ``names``: the photos' original names when the files are not under them (uploads)."""
        from tqdm import tqdm

        from ..data.split import read_metadata

        listed, paths = _list_photos(photos)
        names = listed if names is None else [Path(n).name for n in names]
        label_of = _read_label_map(labels, names, photos) if labels is not None else {}
        meta_of = ({row["filename"]: row for row in read_metadata(metadata).to_dict("records")}
                   if metadata is not None else {})
        checked = [check_photo(p) for p in tqdm(paths, desc="checking photos", unit="photo", leave=False)]
        report, fresh = AddReport(), []
        existing = self._names_by_hash([c.sha256 for c in checked])
        first_of: dict[str, str] = {}
        for name, photo in zip(names, checked):
            if photo.sha256 in existing or photo.sha256 in first_of:
                report.duplicates.append((name, existing.get(photo.sha256) or first_of[photo.sha256]))
                continue
            first_of[photo.sha256] = name
            fresh.append((name, photo))
        with self.engine.connect() as connection:
            model_ids = connection.scalars(select(models.c.id)).all()
        vectors = {model_id: self._embed(self._embedder_for(model_id), [p.path for _, p in fresh]) for model_id in model_ids}
        stored = [self.store.put(photo) for _, photo in fresh]
        with self.engine.begin() as connection:
            ids = _individual_ids(connection, {label_of[n] for n, _ in fresh if n in label_of}, report)
            image_ids = []
            for (name, photo), stored_name in zip(fresh, stored):
                label = label_of.get(name)
                row = _image_row(name, photo, stored_name, ids.get(label), meta_of.get(name, {}), who or default_who())
                image_ids.append(connection.execute(insert(images).values(**row)).inserted_primary_key[0])
                report.labelled += label is not None
            for model_id, model_vectors in vectors.items():
                _insert_embeddings(connection, model_id, image_ids, model_vectors)
        report.added, report.queued = len(fresh), len(fresh) - report.labelled
        self._gallery = None
        return report

    def _embedder_for(self, model_id: int):
        """The embedder of a bound model: the active one's (checked, kept), or another's, built afresh."""
        from ..inference.embedder import Embedder

        if model_id == self._active_model()["id"]:
            return self.embedder
        with self.engine.connect() as connection:
            runs = json.loads(connection.scalar(select(models.c.runs).where(models.c.id == model_id)))
        return Embedder.from_runs(runs, device=self.device, cache=False, engine=self.inference)

    def _names_by_hash(self, hashes: list[str]) -> dict[str, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(images.c.sha256, images.c.original_name).where(images.c.sha256.in_(hashes))).all()
        return dict(rows)

    def _image_rows(self):
        with self.engine.connect() as connection:
            return connection.execute(select(images).order_by(images.c.id)).all()

    # ---- identifying -------------------------------------------------------------------------------

    def _load_gallery(self) -> dict:
        """Known photos' embeddings under the active model, loaded once and reloaded only after a change."""
        model = self._active_model()
        with self.engine.connect() as connection:
            state = (model["id"], connection.scalar(select(func.max(images.c.id))), connection.scalar(select(func.max(decisions.c.id))))
            if self._gallery is not None and self._gallery["state"] == state:
                return self._gallery
            rows = connection.execute(
                select(images.c.id, images.c.sha256, images.c.original_name, images.c.stored_path, individuals.c.name,
                       embeddings.c.vector)
                .join(individuals, images.c.individual_id == individuals.c.id)
                .join(embeddings, (embeddings.c.image_id == images.c.id) & (embeddings.c.model_id == model["id"]))
                .where(images.c.status == KNOWN).order_by(images.c.id)).all()
        vectors = np.stack([np.frombuffer(r.vector, dtype=np.float32) for r in rows]) if rows else np.zeros((0, model["dim"]), np.float32)
        names = np.array([r.name for r in rows], dtype=object)
        self._gallery = {"state": state, "model_id": model["id"], "rows": rows, "index": EmbeddingIndex(vectors),
                         "individuals": names, "blocks": GalleryBlocks.of(names),
                         "position": {r.sha256: i for i, r in enumerate(rows)}}
        return self._gallery

    def identify(self, photos, top_k: int = 5, photos_per_individual: int = 3) -> list[Identification]:
        """Top-k individuals for each photo (paths, or a folder), with score, calibrated probability,
        best-matching catalogue photos and the verdict. A photo already in the catalogue is not
        matched against itself."""
        names, paths = _list_photos(photos) if isinstance(photos, (str, Path)) else ([str(p) for p in photos], [Path(p) for p in photos])
        gallery = self._load_gallery()
        if not len(gallery["index"]):
            raise CatalogError(f"{self.name}: no identified photos yet (add some with: jaguar-reid catalog add {self.name} --images DIR --labels known.csv)")
        checked = [check_photo(p) for p in paths]
        queries = self._query_vectors(checked, gallery["model_id"])
        similarity = gallery["index"].similarities(queries)
        for row, photo in enumerate(checked):  # never match a photo with itself
            if photo.sha256 in gallery["position"]:
                similarity[row, gallery["position"][photo.sha256]] = -2.0
        calibration = self.calibration
        scores, individuals_ = individual_scores(similarity, gallery["blocks"], calibration.method, calibration.k)
        decisions_ = decision_scores(scores, calibration.normalization)
        return [self._identification(name, photo, similarity[i], scores[i], decisions_[i], individuals_, calibration,
                                     top_k, photos_per_individual, gallery)
                for i, (name, photo) in enumerate(zip(names, checked))]

    def _query_vectors(self, checked: list[PhotoFile], model_id: int) -> np.ndarray:
        with self.engine.connect() as connection:
            stored = dict(connection.execute(
                select(images.c.sha256, embeddings.c.vector).join(embeddings, embeddings.c.image_id == images.c.id)
                .where(embeddings.c.model_id == model_id, images.c.sha256.in_([c.sha256 for c in checked]))).all())
        missing = [c.path for c in checked if c.sha256 not in stored]
        fresh = iter(self.embedder.embed(missing)) if missing else iter(())
        return np.stack([np.frombuffer(stored[c.sha256], dtype=np.float32) if c.sha256 in stored else next(fresh)
                         for c in checked])

    def _identification(self, name, photo, similarity, scores, decision, individuals_, calibration, top_k,
                        per_individual, gallery) -> Identification:
        order = np.argsort(-decision, kind="stable")[:top_k]
        probabilities = calibration.probability(decision[order])
        candidates = []
        for column, probability in zip(order, probabilities):
            members = np.flatnonzero(gallery["individuals"] == individuals_[column])
            best = members[np.argsort(-similarity[members], kind="stable")[:per_individual]]
            candidates.append(Candidate(str(individuals_[column]), float(scores[column]), float(decision[column]),
                                        float(probability), [
                {"sha256": gallery["rows"][j].sha256, "original_name": gallery["rows"][j].original_name,
                 "path": str(self.store.path(gallery["rows"][j].stored_path)), "similarity": float(similarity[j])}
                for j in best]))
        known = bool(candidates) and candidates[0].decision_score >= calibration.threshold
        return Identification(name, photo.sha256, "known" if known else "new", candidates[0].individual if known else None,
                              calibration.threshold, candidates)

    # ---- deciding ------------------------------------------------------------------------------------

    def find_image(self, photo: str | Path) -> dict:
        """A catalogue photo by file (its content), sha256 (or a prefix of 8+ hex digits) or ``#id``."""
        text = str(photo)
        if Path(text).is_file():
            where = images.c.sha256 == check_photo(text).sha256
        elif text.startswith("#") and text[1:].isdigit():
            where = images.c.id == int(text[1:])
        elif len(text) >= 8 and all(c in "0123456789abcdef" for c in text.lower()):
            where = images.c.sha256.startswith(text.lower())
        else:
            raise CatalogError(f"{photo}: no such file, and not a photo's sha256 or #id")
        with self.engine.connect() as connection:
            rows = connection.execute(select(images).where(where).limit(2)).mappings().all()
        if not rows:
            raise CatalogError(f"{photo}: not in the catalogue {self.name} (add it first with: jaguar-reid catalog add {self.name} --images DIR)")
        if len(rows) > 1:
            raise CatalogError(f"{photo}: matches several photos; give more digits of its sha256")
        return dict(rows[0])

    def decide(self, photo, as_name: str | None = None, new_name: str | None = None, reject: bool = False,
               who: str | None = None, candidates: list[dict] | None = None, expect_status: str | None = None) -> dict:
        """Record a person's decision on a catalogue photo: it shows individual ``as_name``, a new
        individual ``new_name``, or it is rejected (no usable animal). ``candidates`` is what the
        person was shown (default: the engine's current proposal). With ``expect_status`` the
        decision only applies if the photo is still in that state (two reviewers never both decide it)."""
        if sum(x is not None and x is not False for x in (as_name, new_name, reject or None)) != 1:
            raise CatalogError("decide needs exactly one of: --as NAME, --new NAME, --reject")
        image = self.find_image(photo)
        if candidates is None and not reject:
            candidates = [asdict(c) for c in self.identify([self.store.path(image["stored_path"])])[0].candidates]
        with self.engine.begin() as connection:
            current = connection.execute(select(images.c.status, images.c.individual_id).where(images.c.id == image["id"])
                                         .with_for_update()).one()  # PostgreSQL: a second reviewer waits here
            if expect_status is not None and current.status != expect_status:
                raise CatalogError(f"{image['original_name']}: already decided by someone else (now {current.status})")
            individual_id, decision, status = None, "reject", REJECTED
            if as_name is not None:
                individual_id, decision, status = self._individual_id(connection, as_name), "known", KNOWN
            elif new_name is not None:
                individual_id, decision, status = self._new_individual(connection, new_name), "new", KNOWN
            connection.execute(update(images).where(images.c.id == image["id"]).values(status=status, individual_id=individual_id))
            record = {"image_id": image["id"], "decision": decision, "individual_id": individual_id,
                      "previous": json.dumps({"status": current.status, "individual_id": current.individual_id}),
                      "candidates": json.dumps(candidates or []), "who": who or default_who(), "at": now()}
            record["id"] = connection.execute(insert(decisions).values(**record)).inserted_primary_key[0]
        self._gallery = None
        return record

    def _individual_id(self, connection: Connection, name: str) -> int:
        found = connection.scalar(select(individuals.c.id).where(individuals.c.name == name, individuals.c.merged_into.is_(None)))
        if found is None:
            names = connection.scalars(select(individuals.c.name)).all()
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CatalogError(f"no individual named {name!r} in {self.name}; {hint}use --new {name!r} for a new one")
        return found

    def _new_individual(self, connection: Connection, name: str) -> int:
        name = name.strip()
        if not name:
            raise CatalogError("a new individual needs a name")
        found = connection.scalar(select(individuals.c.id).where(individuals.c.name == name))
        if found is not None:
            if _photo_count(connection, found) == 0 and not _is_merged(connection, found):
                return found  # a name whose photos were all undone or moved is free again
            raise CatalogError(f"an individual named {name!r} already exists in {self.name}; use --as {name!r} to add this photo to it")
        return connection.execute(insert(individuals).values(name=name, notes="", created_at=now())).inserted_primary_key[0]

    # ---- reviewing: the queue, individuals, merge, undo -------------------------------------------------------------

    def queue(self, after: int = 0, limit: int = 1) -> list[dict]:
        """Photos waiting for review, oldest first, with ids above ``after``."""
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(select(images).where(images.c.status == QUEUED, images.c.id > after)
                                                        .order_by(images.c.id).limit(limit)).mappings()]

    def image(self, image_id: int) -> dict:
        with self.engine.connect() as connection:
            row = connection.execute(select(images).where(images.c.id == image_id)).mappings().first()
        if row is None:
            raise CatalogError(f"#{image_id}: no such photo in {self.name}")
        return dict(row)

    def individuals(self) -> list[dict]:
        """Individuals with photos (merged ones left out): id, name, notes, photo count, a photo's sha256."""
        count = func.count(images.c.id)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(individuals.c.id, individuals.c.name, individuals.c.notes, count.label("photos"),
                       func.min(images.c.sha256).label("cover"))
                .join(images, (images.c.individual_id == individuals.c.id) & (images.c.status == KNOWN))
                .where(individuals.c.merged_into.is_(None)).group_by(individuals.c.id).order_by(individuals.c.name)).mappings()
            return [dict(r) for r in rows]

    def individual(self, name: str) -> dict:
        """One individual and its photos (newest first)."""
        with self.engine.connect() as connection:
            found = self._individual_id(connection, name)
            row = dict(connection.execute(select(individuals).where(individuals.c.id == found)).mappings().one())
            row["photos"] = [dict(r) for r in connection.execute(
                select(images).where(images.c.individual_id == found, images.c.status == KNOWN).order_by(images.c.id.desc())).mappings()]
        return row

    def rename(self, name: str, new_name: str) -> None:
        new_name = new_name.strip()
        with self.engine.begin() as connection:
            found = self._individual_id(connection, name)
            if not new_name:
                raise CatalogError("the new name is empty")
            if connection.scalar(select(individuals.c.id).where(individuals.c.name == new_name)) is not None:
                raise CatalogError(f"an individual named {new_name!r} already exists in {self.name}")
            connection.execute(update(individuals).where(individuals.c.id == found).values(name=new_name))

    def merge(self, source: str, target: str, who: str | None = None) -> int:
        """Move every photo of ``source`` to ``target`` (one action in the log, undoable); returns the photo count."""
        import uuid

        action = uuid.uuid4().hex
        with self.engine.begin() as connection:
            source_id, target_id = self._individual_id(connection, source), self._individual_id(connection, target)
            if source_id == target_id:
                raise CatalogError(f"cannot merge {source!r} with itself")
            moved = connection.execute(select(images.c.id, images.c.status).where(
                images.c.individual_id == source_id, images.c.status == KNOWN)).all()
            connection.execute(update(images).where(images.c.individual_id == source_id, images.c.status == KNOWN)
                               .values(individual_id=target_id))
            connection.execute(update(individuals).where(individuals.c.id == source_id).values(merged_into=target_id))
            stamp, person = now(), who or default_who()
            connection.execute(insert(decisions), [
                {"image_id": image_id, "decision": "merge", "individual_id": target_id, "action": action,
                 "previous": json.dumps({"status": status, "individual_id": source_id}),
                 "candidates": json.dumps({"merged": source, "into": target}), "who": person, "at": stamp}
                for image_id, status in moved])
        self._gallery = None
        return len(moved)

    def undo(self, decision_id: int, who: str | None = None) -> int:
        """Undo a decision (a merge: all its rows): each photo goes back to its state before, if nobody
        changed it since; logged as ``undo``. Returns the number of photos restored."""
        with self.engine.begin() as connection:
            row = connection.execute(select(decisions).where(decisions.c.id == decision_id)).mappings().first()
            if row is None or row["decision"] == "undo":
                raise CatalogError(f"decision {decision_id}: no such decision to undo in {self.name}")
            rows = connection.execute(select(decisions).where(decisions.c.action == row["action"])).mappings().all() \
                if row["action"] else [row]
            if connection.scalar(select(func.count()).select_from(decisions).where(
                    decisions.c.decision == "undo", decisions.c.candidates == json.dumps({"undoes": decision_id}))):
                raise CatalogError(f"decision {decision_id} was already undone")
            for done in rows:
                state = _expected_state(done)
                current = connection.execute(select(images.c.status, images.c.individual_id)
                                             .where(images.c.id == done["image_id"]).with_for_update()).one()
                if (current.status, current.individual_id) != state:
                    raise CatalogError(f"decision {decision_id}: the photo was decided again since; undo the later decision first")
                before = json.loads(done["previous"])
                connection.execute(update(images).where(images.c.id == done["image_id"])
                                   .values(status=before["status"], individual_id=before["individual_id"]))
            if row["decision"] == "merge":
                connection.execute(update(individuals).where(individuals.c.id == json.loads(rows[0]["previous"])["individual_id"])
                                   .values(merged_into=None))
            stamp, person = now(), who or default_who()
            connection.execute(insert(decisions), [
                {"image_id": done["image_id"], "decision": "undo", "individual_id": json.loads(done["previous"])["individual_id"],
                 "action": done["action"], "previous": json.dumps({"status": _expected_state(done)[0], "individual_id": done["individual_id"]}),
                 "candidates": json.dumps({"undoes": decision_id}), "who": person, "at": stamp} for done in rows])
        self._gallery = None
        return len(rows)

    # ---- reading out -------------------------------------------------------------------------------

    def export(self, out: str | Path) -> Path:
        """Known photos as a Kaggle-format training set: OUT/train.csv (filename,ground_truth),
        OUT/train/<photo> and OUT/metadata.csv (filename, original name, side, date, location, extras)."""
        import pandas as pd

        from ..files import atomic_path

        out = Path(out)
        with self.engine.connect() as connection:
            rows = connection.execute(select(images, individuals.c.name.label("individual"))
                                      .join(individuals, images.c.individual_id == individuals.c.id)
                                      .where(images.c.status == KNOWN).order_by(images.c.id)).mappings().all()
        if not rows:
            raise CatalogError(f"{self.name}: no identified photos to export")
        (out / "train").mkdir(parents=True, exist_ok=True)
        table, meta = [], []
        for row in rows:
            filename = Path(row["stored_path"]).name
            target = out / "train" / filename
            if not target.exists():
                with atomic_path(target) as tmp:
                    tmp.write_bytes(self.store.path(row["stored_path"]).read_bytes())
            table.append({"filename": filename, "ground_truth": row["individual"]})
            meta.append({"filename": filename, "original_name": row["original_name"], "side": row["side"] or "",
                         "date": row["date"] or "", "location": row["location"] or "", **json.loads(row["extra"])})
        for name, frame in (("metadata.csv", pd.DataFrame(meta)), ("train.csv", pd.DataFrame(table))):
            with atomic_path(out / name) as tmp:
                frame.to_csv(tmp, index=False)
        return out / "train.csv"

    def decision_log(self, limit: int | None = None) -> list[dict]:
        """The decision log, newest first."""
        query = (select(decisions, images.c.original_name, images.c.sha256, individuals.c.name.label("individual"))
                 .join(images, decisions.c.image_id == images.c.id)
                 .outerjoin(individuals, decisions.c.individual_id == individuals.c.id).order_by(decisions.c.id.desc()))
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(query.limit(limit) if limit else query).mappings()]

    def stats(self) -> dict:
        """Counts: individuals (with identified photos), photos by status, photos per individual, models, decisions."""
        with self.engine.connect() as connection:
            by_status = dict(connection.execute(select(images.c.status, func.count()).group_by(images.c.status)).all())
            per_individual = connection.scalars(
                select(func.count()).select_from(images).where(images.c.status == KNOWN).group_by(images.c.individual_id)).all()
            n_decisions = connection.scalar(select(func.count()).select_from(decisions))
            model_rows = connection.execute(select(models.c.fingerprint, models.c.runs, models.c.open_set)).all()
        active = self._info("active_model")
        return {
            "catalogue": self.name, "schema_version": int(self._info("schema_version")), "image_store": str(self.store.root),
            "individuals": len(per_individual), "photos_known": by_status.get(KNOWN, 0), "photos_queued": by_status.get(QUEUED, 0),
            "photos_rejected": by_status.get(REJECTED, 0),
            "photos_per_individual": {"min": int(min(per_individual, default=0)), "median": float(np.median(per_individual)) if per_individual else 0.0,
                                      "max": int(max(per_individual, default=0))},
            "decisions": n_decisions,
            "models": [{"fingerprint": f, "runs": json.loads(r), "active": f == active,
                        "threshold": json.loads(o)["threshold"]} for f, r, o in model_rows],
        }


def _expected_state(decision: dict) -> tuple[str, int | None]:
    """(status, individual id) a decision left its photo in."""
    status = {"known": KNOWN, "new": KNOWN, "merge": KNOWN, "reject": REJECTED}[decision["decision"]]
    return status, decision["individual_id"]


def _photo_count(connection: Connection, individual_id: int) -> int:
    return connection.scalar(select(func.count()).select_from(images).where(images.c.individual_id == individual_id))


def _is_merged(connection: Connection, individual_id: int) -> bool:
    return connection.scalar(select(individuals.c.merged_into).where(individuals.c.id == individual_id)) is not None


def _ensemble_fingerprint(runs) -> str:
    parts = [run.fingerprint() for run in runs]
    return parts[0] if len(parts) == 1 else hashlib.sha256("+".join(parts).encode()).hexdigest()[:16]


def _set_info(connection: Connection, key: str, value: str) -> None:
    if connection.execute(update(catalog_info).where(catalog_info.c.key == key).values(value=value)).rowcount == 0:
        connection.execute(insert(catalog_info).values(key=key, value=value))


def _insert_embeddings(connection: Connection, model_id: int, image_ids: list[int], vectors: np.ndarray) -> None:
    if image_ids:
        connection.execute(insert(embeddings), [{"image_id": i, "model_id": model_id, "vector": np.asarray(v, np.float32).tobytes()}
                                                for i, v in zip(image_ids, vectors)])


def _individual_ids(connection: Connection, names: set[str], report: AddReport) -> dict[str, int]:
    ids = dict(connection.execute(select(individuals.c.name, individuals.c.id).where(individuals.c.name.in_(sorted(names)))).all())
    for name in sorted(names - set(ids)):
        ids[name] = connection.execute(insert(individuals).values(name=name, notes="", created_at=now())).inserted_primary_key[0]
        report.new_individuals.append(name)
    return ids


def _image_row(name: str, photo: PhotoFile, stored_name: str, individual_id: int | None, meta: dict, who: str) -> dict:
    known = {key: next((meta[c] for c in columns if meta.get(c)), None) for key, columns in _METADATA_COLUMNS.items()}
    taken = {c for columns in _METADATA_COLUMNS.values() for c in columns}
    extra = {k: v for k, v in meta.items() if k not in taken and k != "filename" and v != ""}
    return {"sha256": photo.sha256, "original_name": name, "stored_path": stored_name, "width": photo.width,
            "height": photo.height, "individual_id": individual_id, "status": KNOWN if individual_id else QUEUED,
            **known, "extra": json.dumps(extra), "added_by": who, "added_at": now()}


def _list_photos(photos) -> tuple[list[str], list[Path]]:
    """Names (relative to the folder) and paths of a folder's files (hidden ones skipped), or of given paths."""
    if isinstance(photos, (str, Path)) and Path(photos).is_dir():
        root = Path(photos)
        paths = sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not paths:
            raise DataError(f"{root}: no photos in this folder")
        return [p.relative_to(root).as_posix() for p in paths], paths
    paths = [Path(p) for p in ([photos] if isinstance(photos, (str, Path)) else photos)]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
    if not paths:
        raise DataError("no photos given")
    return [p.name for p in paths], paths


def _read_label_map(labels: str | Path, names: list[str], folder) -> dict[str, str]:
    from ..data.tables import read_labels

    table = read_labels(labels)
    present = set(names)
    for row, filename in enumerate(table["filename"]):
        if filename not in present:
            raise DataError(f"{labels} line {row + 2}: names {filename!r}, which is not in {folder}")
    return dict(zip(table["filename"], table["ground_truth"]))
