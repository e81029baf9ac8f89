"""Loading many rows at once: COPY on PostgreSQL, executemany on SQLite.

Both are linear in the rows and stream them: nothing is held in memory but the row at hand
(PostgreSQL) or one batch (SQLite). Values go through the columns' own types (money is checked
against its column, timestamps and JSON are encoded as SQLAlchemy does), so rows loaded here
read back exactly like rows written any other way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from metaspend_pipeline.storage.db import is_postgres

SQLITE_BATCH_ROWS = 5000


def _json(value: Any) -> str:
    """JSON text of a row as Meta sent it (orjson: the same text as json.dumps, several times faster)."""
    return orjson.dumps(value).decode()


def _encoders(conn: sa.Connection, table: sa.Table, columns: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    encoders: list[Callable[[Any], Any] | None] = []
    for name in columns:
        type_ = table.c[name].type
        if isinstance(type_, sa.JSON) or isinstance(getattr(type_, "impl", None), sa.JSON):
            encoders.append(_json)
        else:
            encoders.append(type_._cached_bind_processor(conn.dialect))
    return encoders


def load_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Append `rows` (tuples in the order of `columns`) to `table` in the caller's transaction;
    returns how many were loaded."""
    encoders = _encoders(conn, table, columns)
    active = [(i, e) for i, e in enumerate(encoders) if e is not None]

    def encoded(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for i, encode in active:
            if values[i] is not None:
                values[i] = encode(values[i])
        return values

    names = ", ".join(f'"{c}"' for c in columns)
    try:
        return _load(conn, table, names, len(columns), rows, encoded)
    except conn.dialect.loaded_dbapi.Error as exc:
        # the same exceptions as any other statement: IntegrityError for a duplicate key, ...
        raise sa.exc.DBAPIError.instance(f"loading {table.name}", None, exc, conn.dialect.loaded_dbapi.Error) from exc


def _load(
    conn: sa.Connection,
    table: sa.Table,
    names: str,
    width: int,
    rows: Iterable[Sequence[Any]],
    encoded: Callable[[Sequence[Any]], list[Any]],
) -> int:
    driver = conn.connection.driver_connection
    count = 0
    if is_postgres(conn):
        with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(encoded(row))
                count += 1
        return count
    statement = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" for _ in range(width))})'
    cursor = driver.cursor()
    try:
        iterator = iter(rows)
        while batch := [encoded(r) for r in itertools.islice(iterator, SQLITE_BATCH_ROWS)]:
            cursor.executemany(statement, batch)
            count += len(batch)
    finally:
        cursor.close()
    return count
