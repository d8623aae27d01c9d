"""The review log: decide, merge, rename and undo, each one transaction and one action in the log.

A decision row records the photo's state before (``previous``) so that undo can restore it, and
undo refuses when the photo was decided again since (undo the later decision first). A merge
writes one row per moved photo, sharing one ``action`` id, and is undone as one.
"""

from __future__ import annotations

import getpass
import json
import uuid

from sqlalchemy import insert, select, update

from ..errors import CatalogError
from .database import now
from .repository import Repository
from .schema import Decision, Status, decisions, images, individuals


def default_who() -> str:
    """The logged-in user's name, who a decision is recorded for unless one is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def decide(repository: Repository, image: dict | list[dict], as_name: str | None = None, new_name: str | None = None,
           reject: bool = False, who: str | None = None, candidates: list[dict] | None = None,
           expect_status: str | None = None) -> dict:
    """Record that the photo ``image`` (its row; or the photos of one encounter, a list of rows)
    shows ``as_name``, a new individual ``new_name``, or is rejected; ``candidates``: what the
    person was shown. An encounter's photos are decided in one transaction as one action (undone
    as one). With ``expect_status`` it applies only if every photo is still in that state. Returns
    the (first) decision row, with ``was``: the individual the photo showed before, if any."""
    if sum(x is not None and x is not False for x in (as_name, new_name, reject or None)) != 1:
        raise CatalogError("decide needs exactly one of: --as NAME, --new NAME, --reject")
    photos = image if isinstance(image, list) else [image]
    action = uuid.uuid4().hex if len(photos) > 1 else None
    with repository.transaction() as connection:
        individual_id, decision, status = None, Decision.REJECT, Status.REJECTED
        if as_name is not None:
            individual_id, decision, status = repository.individual_id(connection, as_name), Decision.KNOWN, Status.KNOWN
        elif new_name is not None:
            individual_id, decision, status = repository.new_individual(connection, new_name), Decision.NEW, Status.KNOWN
        records = [_decide_one(connection, photo, individual_id, decision, status, action, candidates, who, expect_status)
                   for photo in photos]
    return records[0]


def _decide_one(connection, image: dict, individual_id, decision, status, action, candidates, who, expect_status) -> dict:
    current = connection.execute(select(images.c.status, images.c.individual_id).where(images.c.id == image["id"])
                                 .with_for_update()).one()  # PostgreSQL: a second reviewer waits here
    if expect_status is not None and current.status != expect_status:
        raise CatalogError(f"{image['original_name']}: already decided by someone else (now {current.status})")
    connection.execute(update(images).where(images.c.id == image["id"]).values(status=status, individual_id=individual_id))
    record = {"image_id": image["id"], "decision": str(decision), "individual_id": individual_id, "action": action,
              "previous": json.dumps({"status": current.status, "individual_id": current.individual_id}),
              "candidates": json.dumps(candidates or []), "who": who or default_who(), "at": now()}
    record["id"] = connection.execute(insert(decisions).values(**record)).inserted_primary_key[0]
    was = None
    if current.status == Status.KNOWN and current.individual_id is not None:
        was = connection.scalar(select(individuals.c.name).where(individuals.c.id == current.individual_id))
    return {**record, "was": was}


def merge(repository: Repository, source: str, target: str, who: str | None = None) -> int:
    """Move every photo of ``source`` to ``target`` (one action in the log); returns the photo count."""
    action = uuid.uuid4().hex
    with repository.transaction() as connection:
        source_id, target_id = repository.individual_id(connection, source), repository.individual_id(connection, target)
        if source_id == target_id:
            raise CatalogError(f"cannot merge {source!r} with itself")
        moved = connection.execute(select(images.c.id, images.c.status).where(
            images.c.individual_id == source_id, images.c.status == Status.KNOWN)).all()
        connection.execute(update(images).where(images.c.individual_id == source_id, images.c.status == Status.KNOWN)
                           .values(individual_id=target_id))
        connection.execute(update(individuals).where(individuals.c.id == source_id).values(merged_into=target_id))
        stamp, person = now(), who or default_who()
        detail = json.dumps({"source": source, "target": target})
        # an individual without known photos still leaves one row: the merge is in the log and can be undone
        connection.execute(insert(decisions), [
            {"image_id": image_id, "decision": str(Decision.MERGE), "individual_id": target_id, "action": action,
             "previous": json.dumps({"status": status, "individual_id": source_id}), "detail": detail,
             "who": person, "at": stamp}
            for image_id, status in moved or [(None, None)]])
    return len(moved)


def rename(repository: Repository, name: str, new_name: str, who: str | None = None) -> dict:
    """Rename an individual (one entry in the log, undoable); returns the decision row."""
    new_name = new_name.strip()
    with repository.transaction() as connection:
        found = repository.individual_id(connection, name)
        if not new_name:
            raise CatalogError("the new name is empty")
        if connection.scalar(select(individuals.c.id).where(individuals.c.name == new_name)) is not None:
            raise CatalogError(f"an individual named {new_name!r} already exists in {repository.name}")
        connection.execute(update(individuals).where(individuals.c.id == found).values(name=new_name))
        record = {"image_id": None, "decision": str(Decision.RENAME), "individual_id": found,
                  "previous": json.dumps({"name": name}), "detail": json.dumps({"old": name, "new": new_name}),
                  "who": who or default_who(), "at": now()}
        record["id"] = connection.execute(insert(decisions).values(**record)).inserted_primary_key[0]
    return record


def undo(repository: Repository, decision_id: int, who: str | None = None) -> int:
    """Undo a decision (a merge: all its rows); logged as ``undo``. Returns the number of log rows taken back."""
    with repository.transaction() as connection:
        row = connection.execute(select(decisions).where(decisions.c.id == decision_id)).mappings().first()
        if row is None or row["decision"] == Decision.UNDO:
            raise CatalogError(f"decision {decision_id}: no such decision to undo in {repository.name}")
        if connection.scalar(select(decisions.c.id).where(decisions.c.undoes == decision_id).limit(1)) is not None:
            raise CatalogError(f"decision {decision_id} was already undone")
        rows = (connection.execute(select(decisions).where(decisions.c.action == row["action"])).mappings().all()
                if row["action"] else [row])
        if row["decision"] == Decision.RENAME:
            _undo_rename(connection, row, decision_id)
        else:
            _undo_photos(connection, rows, decision_id)
        stamp, person = now(), who or default_who()
        connection.execute(insert(decisions), [
            {"image_id": done["image_id"], "decision": str(Decision.UNDO), "action": done["action"], "undoes": done["id"],
             **_restored(done), "who": person, "at": stamp} for done in rows])
    return len(rows)


def _undo_photos(connection, rows, decision_id: int) -> None:
    for done in (row for row in rows if row["image_id"] is not None):  # a merge of no photos logs one row without one
        current = connection.execute(select(images.c.status, images.c.individual_id)
                                     .where(images.c.id == done["image_id"]).with_for_update()).one()
        if (current.status, current.individual_id) != _state_after(done):
            raise CatalogError(f"decision {decision_id}: the photo was decided again since; undo the later decision first")
        before = json.loads(done["previous"])
        connection.execute(update(images).where(images.c.id == done["image_id"])
                           .values(status=before["status"], individual_id=before["individual_id"]))
    if rows[0]["decision"] == Decision.MERGE:
        source_id = json.loads(rows[0]["previous"])["individual_id"]
        connection.execute(update(individuals).where(individuals.c.id == source_id).values(merged_into=None))


def _undo_rename(connection, row, decision_id: int) -> None:
    names = json.loads(row["detail"])
    current = connection.scalar(select(individuals.c.name).where(individuals.c.id == row["individual_id"]))
    if current != names["new"]:
        raise CatalogError(f"decision {decision_id}: {names['new']!r} was renamed again since; undo the later rename first")
    if connection.scalar(select(individuals.c.id).where(individuals.c.name == names["old"])) is not None:
        raise CatalogError(f"decision {decision_id}: the name {names['old']!r} is taken again; rename that individual first")
    connection.execute(update(individuals).where(individuals.c.id == row["individual_id"]).values(name=names["old"]))


def _restored(done: dict) -> dict:
    """An undo row's individual (the one the photo, or the renamed individual, is back to) and its
    ``previous`` (the state the undone decision had left)."""
    if done["decision"] == Decision.RENAME:
        return {"individual_id": done["individual_id"], "previous": json.dumps({"name": json.loads(done["detail"])["new"]})}
    status, individual_id = _state_after(done)
    return {"individual_id": json.loads(done["previous"])["individual_id"],
            "previous": json.dumps({"status": status, "individual_id": individual_id})}


def _state_after(decision: dict) -> tuple[str, int | None]:
    """(status, individual id) a decision left its photo in."""
    status = Status.REJECTED if decision["decision"] == Decision.REJECT else Status.KNOWN
    return status, decision["individual_id"]
