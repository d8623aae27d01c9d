"""The review side of ``Catalog``: finding photos, deciding (a photo, or a queued encounter at
once), rename, merge, undo, the queue and the log. ``Catalog`` inherits it; the work is done by
``review`` (the decision log) and ``repository`` (the SQL)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import CatalogError
from . import review
from .gallery import Identification, identify_encounters
from .photos import photo_condition
from .schema import Status, images


class Reviewing:
    """Review methods for a class that has ``repository``, ``store``, ``name``, ``calibration``,
    ``gallery()`` and ``identify()`` (``Catalog``)."""

    def find_image(self, photo: str | Path) -> dict:
        """A catalogue photo by file (its content), sha256 (or a prefix of 8+ hex digits) or ``#id``."""
        rows = self.repository.images_where(photo_condition(photo))
        if not rows:
            raise CatalogError(f"{photo}: not in the catalogue {self.name} (add it first with: jaguar-reid catalog add {self.name} --images DIR)")
        if len(rows) > 1:
            raise CatalogError(f"{photo}: matches several photos; give more digits of its sha256")
        return rows[0]

    def decide(self, photo, as_name: str | None = None, new_name: str | None = None, reject: bool = False,
               who: str | None = None, candidates: list[dict] | None = None, expect_status: str | None = None,
               with_encounter: bool = False) -> dict:
        """Record a person's decision on a catalogue photo: it shows individual ``as_name``, a new
        individual ``new_name``, or it is rejected (no usable animal). ``candidates`` is what the
        person was shown, stored as given (default: the current proposal). With ``expect_status``
        the decision only applies if the photo is still in that state (two reviewers never both
        decide it). ``with_encounter``: the queued photos of its encounter too, as one action (one
        transaction, undone as one). The returned row's ``was`` names the individual the photo showed before."""
        image = self.find_image(photo)
        photos = self.encounter_queue(image) if with_encounter else [image]
        if candidates is None and not reject:
            candidates = [asdict(c) for c in self.identify_queued(photos).candidates]
        return review.decide(self.repository, photos, as_name, new_name, reject, who, candidates, expect_status)

    def rename(self, name: str, new_name: str, who: str | None = None) -> dict:
        """Rename an individual (one entry in the decision log, undoable); returns that entry."""
        return review.rename(self.repository, name, new_name, who)

    def merge(self, source: str, target: str, who: str | None = None) -> int:
        """Move every photo of ``source`` to ``target`` (one action in the log, undoable); returns the photo count."""
        return review.merge(self.repository, source, target, who)

    def undo(self, decision_id: int, who: str | None = None) -> int:
        """Undo a decision (a merge: all its rows), if nobody changed its photos since; returns the rows undone."""
        return review.undo(self.repository, decision_id, who)

    def queue(self, after: int = 0, limit: int = 1) -> list[dict]:
        """Photos waiting for review, oldest first, with ids above ``after``."""
        return self.repository.queue(after, limit)

    def image(self, image_id: int) -> dict:
        """A catalogue photo's row by id."""
        return self.repository.image(image_id)

    def individuals(self) -> list[dict]:
        """Individuals with photos (merged ones left out): id, name, notes, photo count, a photo's sha256."""
        return self.repository.individuals()

    def individual(self, name: str) -> dict:
        """One individual and its photos (newest first)."""
        return self.repository.individual(name)

    def decision_log(self, limit: int | None = None) -> list[dict]:
        """The decision log, newest first (each row with a ``summary`` in words)."""
        return self.repository.decision_log(limit)

    def decision(self, decision_id: int) -> dict | None:
        """One entry of the decision log by id, or None."""
        return self.repository.decision(decision_id)

    def last_decision(self) -> dict | None:
        """The newest decision not undone yet (what "undo last" takes back), or None."""
        return self.repository.last_decision()

    def encounter_queue(self, image: dict) -> list[dict]:
        """The queued photos of ``image``'s encounter, by id (just ``image`` when it has none)."""
        if image["encounter"] is None:
            return [image]
        rows = self.repository.images_where((images.c.encounter == image["encounter"]) & (images.c.status == Status.QUEUED),
                                            limit=10_000)
        return sorted(rows, key=lambda r: r["id"]) if any(r["id"] == image["id"] for r in rows) else [image]

    def identify_queued(self, photos: list[dict], top_k: int = 5) -> Identification:
        """The answer for catalogue photos under review: one photo as ``identify`` gives it, or an
        encounter's photos pooled into one answer (its encounter-level calibration when the model has
        one, else the photo-level one)."""
        if len(photos) == 1:
            return self.identify([self.store.path(photos[0]["stored_path"])], top_k=top_k)[0]
        gallery = self.gallery()
        stored = self.repository.stored_vectors(gallery.key[0], [p["sha256"] for p in photos])
        calibration = self.calibration.for_encounters() or self.calibration
        queries = np.stack([stored[p["sha256"]] for p in photos])
        (_, _, verdict, individual, candidates), = identify_encounters(
            gallery, queries, [0] * len(photos), calibration, top_k, query_sha256=[p["sha256"] for p in photos])
        return Identification(photos[0]["encounter"], None, verdict, individual, calibration.threshold, candidates,
                              [p["original_name"] for p in photos])
