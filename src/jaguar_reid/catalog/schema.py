"""The catalogue's tables (SQLAlchemy Core, so SQLite and PostgreSQL run the same code) and their
versioned upgrades.

Version history:
    1  individuals, images, models, embeddings, decisions, catalog_info
    2  images get an optional crop box (crop_left/top/right/bottom, in pixels), individuals a
       ``merged_into`` link and decisions an ``action`` id, for the review app's crop, merge and undo
    3  decisions get ``undoes`` (a real reference to the decision an undo takes back) and ``detail``
       (a merge's source and target, a rename's old and new name), so ``candidates`` holds only what
       the reviewer was shown; a decision's photo is optional (a rename concerns an individual);
       ``catalog_info.changes`` counts every write (the key of each open catalogue's gallery cache);
       images get an optional ``encounter`` (the photos of one animal at one time and place)

``upgrade`` brings an older catalogue to ``SCHEMA_VERSION`` in one transaction; opening a
catalogue from a newer jaguar-reid is refused.
"""

from __future__ import annotations

import json
from enum import StrEnum

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 3


class Status(StrEnum):
    """Where a catalogue photo stands."""

    KNOWN = "known"  # shows an identified individual
    QUEUED = "queued"  # waits for review
    REJECTED = "rejected"  # no usable animal


class Decision(StrEnum):
    """What one entry of the decision log did."""

    KNOWN = "known"  # a photo shows an existing individual
    NEW = "new"  # a photo shows a new individual
    REJECT = "reject"
    MERGE = "merge"  # every photo of one individual moved to another (one row per photo, one action)
    RENAME = "rename"
    UNDO = "undo"


metadata = MetaData()

catalog_info = Table(
    "catalog_info", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

individuals = Table(
    "individuals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("notes", Text, nullable=False, default=""),
    Column("created_at", String(32), nullable=False),
    Column("merged_into", Integer, ForeignKey("individuals.id"), nullable=True),
)

images = Table(
    "images", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("original_name", Text, nullable=False),
    Column("stored_path", Text, nullable=False),  # relative to the image store
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("individual_id", Integer, ForeignKey("individuals.id"), nullable=True, index=True),
    Column("status", String(16), nullable=False),  # a Status
    Column("side", String(32), nullable=True),
    Column("date", String(32), nullable=True),
    Column("location", Text, nullable=True),
    Column("extra", Text, nullable=False, default="{}"),  # JSON: any other metadata columns
    Column("added_by", String(200), nullable=False),
    Column("added_at", String(32), nullable=False),
    Column("crop_left", Float, nullable=True),
    Column("crop_top", Float, nullable=True),
    Column("crop_right", Float, nullable=True),
    Column("crop_bottom", Float, nullable=True),
    Column("encounter", String(200), nullable=True, index=True),  # None: the photo is its own encounter
)

models = Table(
    "models", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("runs", Text, nullable=False),  # JSON list of run folders (several: an ensemble)
    Column("dim", Integer, nullable=False),
    Column("open_set", Text, nullable=False),  # JSON OpenSetCalibration
    Column("created_at", String(32), nullable=False),
)

embeddings = Table(
    "embeddings", metadata,
    Column("image_id", Integer, ForeignKey("images.id"), primary_key=True),
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # float32, L2-normalised
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=True, index=True),  # None: a rename
    Column("decision", String(16), nullable=False),  # a Decision
    Column("action", String(32), nullable=True, index=True),  # rows written by one action (a merge) share it
    Column("individual_id", Integer, ForeignKey("individuals.id"), nullable=True),
    Column("previous", Text, nullable=False, default="{}"),  # JSON: the photo's (or name's) state before, for undo
    Column("candidates", Text, nullable=False, default="[]"),  # JSON: the candidates the reviewer was shown
    Column("undoes", Integer, ForeignKey("decisions.id"), nullable=True, index=True),
    Column("detail", Text, nullable=False, default="{}"),  # JSON: merge {source, target}, rename {old, new}
    Column("who", String(200), nullable=False),
    Column("at", String(32), nullable=False),
)

_V2_COLUMNS = {"images": [("crop_left", "FLOAT"), ("crop_top", "FLOAT"), ("crop_right", "FLOAT"),
                          ("crop_bottom", "FLOAT")],
               "individuals": [("merged_into", "INTEGER REFERENCES individuals(id)")],
               "decisions": [("action", "VARCHAR(32)")]}
_V3_COLUMNS = {"decisions": ["undoes", "detail"], "images": ["encounter"]}


def _upgrade_1_to_2(connection: Connection) -> None:
    for table, columns in _V2_COLUMNS.items():
        for name, kind in columns:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
    connection.execute(text("CREATE INDEX ix_decisions_action ON decisions (action)"))


def _upgrade_2_to_3(connection: Connection) -> None:
    """Rebuild ``decisions`` (SQLite cannot drop NOT NULL in place): undo pointers and merge details
    move out of ``candidates`` into ``undoes`` and ``detail``; then start the change counter."""
    old = version_metadata(2).tables["decisions"]
    rows = [dict(r) for r in connection.execute(select(old).order_by(old.c.id)).mappings()]
    for index in ("ix_decisions_action", "ix_decisions_image_id"):
        connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
    connection.execute(text("DROP TABLE decisions"))
    decisions.create(connection)
    for row in rows:
        shown = json.loads(row["candidates"] or "[]")
        row.update(undoes=None, detail="{}")
        if row["decision"] == Decision.UNDO:
            row.update(undoes=shown["undoes"], candidates="[]")
        elif row["decision"] == Decision.MERGE:
            row.update(detail=json.dumps({"source": shown["merged"], "target": shown["into"]}), candidates="[]")
    if rows:
        connection.execute(insert(decisions), rows)
    if connection.dialect.name == "postgresql":  # explicit ids were inserted: move the id sequence past them
        connection.execute(text("SELECT setval(pg_get_serial_sequence('decisions', 'id'), "
                                "COALESCE((SELECT MAX(id) FROM decisions), 0) + 1, false)"))
    connection.execute(text("ALTER TABLE images ADD COLUMN encounter VARCHAR(200)"))
    connection.execute(text("CREATE INDEX ix_images_encounter ON images (encounter)"))
    connection.execute(insert(catalog_info).values(key="changes", value="0"))


UPGRADES = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


def version_metadata(version: int) -> MetaData:
    """The tables as an older schema version (1 or 2) had them (for the upgrade steps and their tests)."""
    dropped: dict[str, set[str]] = {table: set(names) for table, names in _V3_COLUMNS.items()}
    if version < 2:
        for table, columns in _V2_COLUMNS.items():
            dropped.setdefault(table, set()).update(name for name, _ in columns)
    old = MetaData()
    for table in metadata.sorted_tables:
        columns = [c._copy() for c in table.columns if c.name not in dropped.get(table.name, set())]
        if table.name == "decisions":
            columns = [Column("image_id", Integer, ForeignKey("images.id"), nullable=False, index=True)
                       if c.name == "image_id" else c for c in columns]
        Table(table.name, old, *columns)
    return old
