"""The catalogue's tables (SQLAlchemy Core, so SQLite and PostgreSQL run the same code) and their
versioned upgrades.

Version history:
    1  individuals, images, models, embeddings, decisions, catalog_info
    2  images get an optional crop box (crop_left/top/right/bottom, in pixels), individuals a
       ``merged_into`` link and decisions an ``action`` id, for the review app's crop, merge and undo

``upgrade`` brings an older catalogue to ``SCHEMA_VERSION`` in one transaction; opening a
catalogue from a newer jaguar-reid is refused.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text, text
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 2

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
    Column("status", String(16), nullable=False),  # known | queued | rejected
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
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False, index=True),
    Column("decision", String(16), nullable=False),  # known | new | reject | merge | undo
    Column("action", String(32), nullable=True, index=True),  # rows written by one action (a merge) share it
    Column("individual_id", Integer, ForeignKey("individuals.id"), nullable=True),
    Column("previous", Text, nullable=False, default="{}"),  # JSON: the image's state before, for undo
    Column("candidates", Text, nullable=False, default="[]"),  # JSON: what the reviewer was shown
    Column("who", String(200), nullable=False),
    Column("at", String(32), nullable=False),
)

_V2_COLUMNS = {"images": [("crop_left", "FLOAT"), ("crop_top", "FLOAT"), ("crop_right", "FLOAT"),
                          ("crop_bottom", "FLOAT")],
               "individuals": [("merged_into", "INTEGER REFERENCES individuals(id)")],
               "decisions": [("action", "VARCHAR(32)")]}


def _upgrade_1_to_2(connection: Connection) -> None:
    for table, columns in _V2_COLUMNS.items():
        for name, kind in columns:
            connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
    connection.execute(text("CREATE INDEX ix_decisions_action ON decisions (action)"))


UPGRADES = {1: _upgrade_1_to_2}


def version_1_metadata() -> MetaData:
    """The tables as schema version 1 had them (to test the upgrade path)."""
    old = MetaData()
    for table in metadata.sorted_tables:
        dropped = {name for name, _ in _V2_COLUMNS.get(table.name, [])}
        Table(table.name, old, *[c._copy() for c in table.columns if c.name not in dropped])
    return old
