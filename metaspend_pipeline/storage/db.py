"""Connecting to the warehouse and migrating it.

One database, addressed by a SQLAlchemy URL: an embedded SQLite file by default, PostgreSQL in
production. Both run the same migrations and the same queries.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import redact

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = "metaspend_pipeline.storage:migrations"


class DatabaseError(MetaspendError, RuntimeError):
    """The warehouse cannot be reached or used; the message names the database, not its password."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return redact(url)


@functools.cache
def engine_for(url: str) -> sa.Engine:
    """One engine (and pool) per URL in a process."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"METASPEND_DATABASE_URL is not a valid SQLAlchemy URL: {redact(exc)}") from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True, future=True)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy issue BEGIN itself, so that a transaction covers reads and writes alike.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        dbapi_connection.create_function("metaspend_local_date", 2, _local_date, deterministic=True)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue instead of deadlocking.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _local_date(moment: str | None, zone: str | None) -> str | None:
    """SQLite has no time zones: the calendar day of a stored UTC timestamp in `zone`."""
    if moment is None:
        return None
    parsed = dt.datetime.fromisoformat(moment)
    parsed = parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed
    return parsed.astimezone(zoneinfo.ZoneInfo(zone or "UTC")).date().isoformat()


def is_postgres(engine: sa.Engine | sa.Connection) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # imported when needed: every run process imports this module

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    # configparser interpolation: a literal % in a password must be doubled
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision`; running it again changes nothing."""
    from alembic import command

    try:
        command.upgrade(alembic_config(url), revision)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot migrate the warehouse at {display_url(url)}: {redact(exc.orig)}") from None


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@functools.cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def migrated_engine(url: str) -> sa.Engine:
    """The engine for `url`, after checking (once per process) that its schema is the newest."""
    if url in _verified:
        return engine_for(url)
    try:
        revision = current_revision(url)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the warehouse at {display_url(url)}: {redact(exc.orig)}") from None
    head = head_revision()
    if revision != head:
        raise DatabaseError(
            f"the warehouse at {display_url(url)} is at revision {revision or 'none (empty)'}, "
            f"the code needs {head}: run `metaspend db upgrade`"
        )
    _verified.add(url)
    return engine_for(url)


_verified: set[str] = set()
