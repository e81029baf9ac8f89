"""A reporting table made equal to its raw rows over a scope, with set-based statements: the one merge
of `meta_spend_daily`, the breakdown tables and the reach tables.

The raw rows already hold Meta's ids and numbers, parsed and validated at fetch time, under a unique
key. So a scope is merged in at most two statements, each linear in the rows whatever the
statistics say:

1. INSERT ... SELECT from the raw rows ON CONFLICT DO UPDATE, changing only rows whose values differ:
   ids and `created_at` stay, and a rerun writes nothing; on a first load of the scope (no row yet),
   a plain INSERT, without the per-row conflict check;
2. DELETE of the scope's rows that have no raw row any more: a hash anti-join of the scope's rows with
   the scope's raw rows (nested loops are off, see `locks.linear_plans`).

The caller holds the organization's lock (`locks.lock_organization`) in its transaction: two runs
over the same scope cannot both insert (READ COMMITTED would let them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from metaspend_pipeline.storage.db import is_postgres
from metaspend_pipeline.storage.locks import linear_plans


@dataclass(frozen=True)
class MergeSpec:
    """How a raw table maps onto a reporting table."""

    raw: sa.Table
    target: sa.Table
    key: Sequence[sa.ColumnElement]  # the target's unique index elements (COALESCE over optional ids)
    identity: Mapping[str, str]  # target column -> raw column, that together name a row
    values: Mapping[str, str]  # target column -> raw column, rewritten when they differ
    optional: frozenset[str]  # identity columns that may be NULL (compared through COALESCE)
    timestamps: tuple[str, ...] = ("created_at", "updated_at")  # target columns set to `now` on insert


@dataclass
class MergeCounts:
    written: int = 0  # inserted or changed
    deleted: int = 0


def _insert(conn: sa.Connection):  # type: ignore[no-untyped-def]
    return postgresql.insert if is_postgres(conn) else sqlite.insert


def merge(
    conn: sa.Connection,
    spec: MergeSpec,
    raw_scope: sa.ColumnElement[bool],
    target_scope: sa.ColumnElement[bool],
    now: dt.datetime,
) -> MergeCounts:
    """Make the target's rows of `target_scope` equal the raw rows of `raw_scope`, in the caller's
    transaction. The two scopes must name the same rows (the same organization, ad accounts, days)."""
    linear_plans(conn)
    r, t = spec.raw, spec.target
    counts = MergeCounts()
    columns = list(dict.fromkeys([*spec.identity, *spec.values]))
    sources = {**spec.identity, **spec.values}
    source = sa.select(
        *[r.c[sources[c]].label(c) for c in columns],
        *[sa.literal(now, t.c[c].type).label(c) for c in spec.timestamps],
    ).where(raw_scope)
    statement = _insert(conn)(t).from_select([*columns, *spec.timestamps], source)
    if conn.execute(sa.select(sa.literal(1)).where(target_scope).limit(1)).first() is None:
        # a first load of the scope (a backfill): nothing to update or delete, and no other writer
        # (the organization's lock is held), so a plain insert
        inserted = conn.execute(statement).rowcount
        # SQLite's driver reports no count for INSERT ... SELECT: the scope's raw rows, all inserted
        counts.written = (
            inserted if inserted >= 0 else conn.execute(sa.select(sa.func.count()).where(raw_scope)).scalar_one()
        )
        return counts
    updated = [c for c in spec.timestamps if c != "created_at"]
    statement = statement.on_conflict_do_update(
        index_elements=list(spec.key),
        set_={
            **{c: statement.excluded[c] for c in spec.values},
            **{c: statement.excluded[c] for c in updated},
        },
        where=sa.or_(*[t.c[c].is_distinct_from(statement.excluded[c]) for c in spec.values]),
    )
    if is_postgres(conn):
        written = statement.returning(sa.literal(1).label("one")).cte("written")
        counts.written = conn.execute(sa.select(sa.func.count()).select_from(written)).scalar_one()
    else:
        counts.written = conn.execute(statement).rowcount

    def same(target_column: str) -> sa.ColumnElement[bool]:
        raw_column = r.c[spec.identity[target_column]]
        if target_column in spec.optional:
            empty = sa.literal_column("''")
            return sa.func.coalesce(raw_column, empty) == sa.func.coalesce(t.c[target_column], empty)
        return raw_column == t.c[target_column]

    still_there = sa.exists(
        # bounded by the raw scope too: only the scope is read, never an ad account's history
        sa.select(sa.literal(1)).where(raw_scope, *[same(c) for c in spec.identity])
    )
    counts.deleted = conn.execute(t.delete().where(target_scope).where(~still_there)).rowcount
    return counts
