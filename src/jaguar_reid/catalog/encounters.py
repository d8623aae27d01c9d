"""Encounters: the photos of one animal at one time and place (both flanks, a burst, a video's
frames), as field teams and matching tools such as Wildbook think of them.

``--encounter-by`` groups the photos of one import: ``folder`` (each folder is an encounter),
``time:MINUTES`` (consecutive photos of one folder whose EXIF times are at most MINUTES apart),
or ``column:NAME`` (a metadata CSV column). Without it each photo is its own encounter.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath

from ..errors import DataError

MODES = ("folder", "time:MINUTES", "column:NAME")


@dataclass(frozen=True)
class EncounterRule:
    """How photos are grouped: ``mode`` folder, time or column, with ``minutes`` or ``column``."""

    mode: str
    minutes: float = 0.0
    column: str = ""

    @classmethod
    def parse(cls, text: str) -> EncounterRule:
        """``folder``, ``time:MINUTES`` or ``column:NAME``; a one-line error naming the value otherwise."""
        mode, _, value = text.strip().partition(":")
        if mode == "folder" and not value:
            return cls("folder")
        if mode == "time":
            try:
                minutes = float(value)
            except ValueError:
                raise DataError(f"--encounter-by {text!r}: time needs a number of minutes, e.g. time:10") from None
            if not minutes > 0:
                raise DataError(f"--encounter-by {text!r}: the minutes must be above 0")
            return cls("time", minutes=minutes)
        if mode == "column" and value.strip():
            return cls("column", column=value.strip())
        raise DataError(f"--encounter-by {text!r}: expected one of {', '.join(MODES)}")


@dataclass
class Grouping:
    """Each photo's encounter (None: its own) and the notes a person should read about it."""

    encounters: list[str | None]
    notes: list[str]


def group_encounters(rule: EncounterRule | None, names: list[str], taken_at: list[str | None], metadata: dict[str, dict],
                     batch: str, metadata_file: str | None = None) -> Grouping:
    """The encounter of each photo, by ``rule``: ``names`` are the photos' names relative to the
    import folder, ``taken_at`` their EXIF times (ISO 8601, or None), ``metadata`` each name's
    metadata row. Folder and time encounters are named ``<batch>/<folder>[#n]`` so that two imports
    never share one; a column's values are the team's own encounter names, kept as they are."""
    if rule is None:
        return Grouping([None] * len(names), [])
    if rule.mode == "folder":
        return Grouping([f"{batch}/{_folder(name)}" for name in names], [])
    if rule.mode == "column":
        return _by_column(rule.column, names, metadata, metadata_file)
    return _by_time(rule.minutes, names, taken_at, batch)


def _folder(name: str) -> str:
    parent = str(PurePosixPath(name).parent)
    return "." if parent in ("", ".") else parent


def _by_column(column: str, names: list[str], metadata: dict[str, dict], metadata_file: str | None) -> Grouping:
    if metadata_file is None:
        raise DataError(f"--encounter-by column:{column} needs --metadata CSV with a {column!r} column")
    if metadata and not any(column in row for row in metadata.values()):
        raise DataError(f"{metadata_file}: no column {column!r} (for --encounter-by column:{column})")
    values = [str(metadata.get(name, {}).get(column) or "").strip() or None for name in names]
    missing = sum(v is None for v in values)
    notes = [f"{missing} photo(s) have no {column!r} value: each is its own encounter"] if missing else []
    return Grouping(values, notes)


def _by_time(minutes: float, names: list[str], taken_at: list[str | None], batch: str) -> Grouping:
    """Within each folder, photos sorted by time; a gap above ``minutes`` starts a new encounter."""
    encounters: list[str | None] = [None] * len(names)
    by_folder: dict[str, list[int]] = {}
    for index, (name, when) in enumerate(zip(names, taken_at)):
        if when is not None:
            by_folder.setdefault(_folder(name), []).append(index)
    for folder, members in by_folder.items():
        members.sort(key=lambda i: taken_at[i])
        count, previous = 0, None
        for index in members:
            moment = datetime.fromisoformat(taken_at[index])
            if previous is not None and (moment - previous).total_seconds() > minutes * 60:
                count += 1
            encounters[index], previous = f"{batch}/{folder}#{count + 1}", moment
    untimed = sum(when is None for when in taken_at)
    notes = [f"{untimed} photo(s) have no EXIF time: each is its own encounter"] if untimed else []
    return Grouping(encounters, notes)


def batch_name() -> str:
    """Names one import, so the folder and time encounters of two imports never merge."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:4]
