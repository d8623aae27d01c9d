"""Opening a catalogue database: a SQLite file path or a database URL, checked for its schema version.

Connection failures and foreign databases become one-line ``CatalogError``s; the password of a
URL never appears in a message.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, insert, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, SQLAlchemyError

from ..errors import CatalogError
from .schema import SCHEMA_VERSION, UPGRADES, catalog_info, metadata


def is_url(location: str | Path) -> bool:
    """True for a database URL (``postgresql://...``), False for a SQLite file path."""
    return "://" in str(location)


def display_name(location: str | Path) -> str:
    """The location as it may be printed (a URL without its password)."""
    if is_url(location):
        try:
            return make_url(str(location)).render_as_string(hide_password=True)
        except ArgumentError:
            return "database URL"
    return str(location)


def now() -> str:
    """The current UTC time as ISO 8601 text, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


SUPPORTED = "a SQLite file path (catalog.db) or a postgresql://user:pass@host/db URL"


def connect(location: str | Path) -> Engine:
    """An engine for a SQLite path or a database URL, with a live connection checked; a file that
    is not a SQLite database and a URL of another kind of database are refused in one line."""
    name = display_name(location)
    if is_url(location) and str(location).split("://")[0].split("+")[0] not in ("postgresql", "postgres", "sqlite"):
        kind = str(location).split("://")[0]
        raise CatalogError(f"{name}: {kind} databases are not supported; use {SUPPORTED}")
    url = _with_driver(str(location)) if is_url(location) else f"sqlite:///{Path(location).resolve()}"
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5} if url.startswith("postgresql") else {})
    except (ArgumentError, NoSuchModuleError) as error:
        raise CatalogError(f"{name}: not a usable database URL ({_first_line(error)})") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":  # opening any file succeeds; reading it tells a database from a photo
                connection.exec_driver_sql("SELECT name FROM sqlite_master LIMIT 1")
    except DatabaseError as error:
        if engine.dialect.name == "sqlite" and "not a database" in str(error.orig or error):
            raise CatalogError(f"{name}: not a jaguar-reid catalogue (the file is not a SQLite database; "
                               "a catalogue is the .db file that catalog create made)") from None
        raise CatalogError(f"{name}: cannot connect to the database ({_first_line(error.orig or error)})") from None
    return engine


def _with_driver(url: str) -> str:
    """``postgresql://`` (and ``postgres://``) use psycopg 3, the driver jaguar-reid installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def _sqlite_pragmas(connection, _record) -> None:
    connection.isolation_level = None  # SQLAlchemy, not the sqlite3 module, begins transactions (below)
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # a second writer waits instead of failing at once
    cursor.close()


def _sqlite_begin_immediate(connection) -> None:
    """Take SQLite's write lock when a transaction begins, so two writers queue up (busy_timeout)
    instead of both reading a photo as undecided and both deciding it (SQLAlchemy's recipe)."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def schema_version(engine: Engine) -> int | None:
    """The catalogue's schema version, or None when the database holds no catalogue."""
    if not inspect(engine).has_table(catalog_info.name):
        return None
    with engine.connect() as connection:
        value = connection.scalar(select(catalog_info.c.value).where(catalog_info.c.key == "schema_version"))
    return int(value) if value is not None else None


def create_schema(engine: Engine, info: dict[str, str], name: str) -> None:
    """Create every table and the catalogue's info in one transaction."""
    if schema_version(engine) is not None:
        raise CatalogError(f"{name}: already holds a catalogue")
    with engine.begin() as connection:
        metadata.create_all(connection)
        rows = {"schema_version": str(SCHEMA_VERSION), "created_at": now(), "changes": "0", **info}
        connection.execute(insert(catalog_info), [{"key": k, "value": v} for k, v in rows.items()])


def drop_schema(engine: Engine) -> None:
    """Drop every catalogue table (after a failed create, so that a retry finds an empty database)."""
    with engine.begin() as connection:
        metadata.drop_all(connection)


def check_version(engine: Engine, name: str) -> None:
    """A one-line error unless the database holds a catalogue of this schema version."""
    version = schema_version(engine)
    if version is None:
        raise CatalogError(f"{name}: no jaguar-reid catalogue here (create one with: jaguar-reid catalog create {name} --run RUN)")
    if version > SCHEMA_VERSION:
        raise CatalogError(f"{name}: catalogue schema version {version} is newer than this jaguar-reid understands "
                           f"({SCHEMA_VERSION}); upgrade jaguar-reid")
    if version < SCHEMA_VERSION:
        raise CatalogError(f"{name}: catalogue schema version {version} is older than {SCHEMA_VERSION}; "
                           f"upgrade it with: jaguar-reid catalog upgrade {name}")


def upgrade_schema(engine: Engine, name: str) -> tuple[int, int]:
    """Apply every upgrade step from the catalogue's version to ``SCHEMA_VERSION`` in one transaction;
    returns (from, to)."""
    version = schema_version(engine)
    if version is None or version > SCHEMA_VERSION:
        check_version(engine, name)
    start = version
    try:
        with engine.begin() as connection:
            while version < SCHEMA_VERSION:
                UPGRADES[version](connection)
                version += 1
            connection.execute(catalog_info.update().where(catalog_info.c.key == "schema_version")
                               .values(value=str(version)))
    except SQLAlchemyError as error:
        raise CatalogError(f"{name}: upgrade from schema version {start} failed, nothing changed ({_first_line(error)})") from None
    return start, version
