"""`meta_spend_daily`: rebuilt from the raw rows with set-based statements, and the reads on it.

The raw rows already hold Meta's ids and numbers, parsed and validated at fetch time, under a
unique key. So a scope (an organization's ad accounts over a range of days) is merged in three
statements, each linear in the rows whatever the statistics say:

1. INSERT ... SELECT from the raw rows ON CONFLICT DO UPDATE, changing only rows whose values
   differ: ids and `created_at` stay, and a rerun writes nothing;
2. DELETE of the scope's rows that have no raw row any more: a hash anti-join of the scope's
   spend rows with the scope's raw rows (nested loops are off, see `locks.linear_plans`);
The object -> ad account map (`meta_object_account`), which the ROAS step reads, follows every
insert into `meta_spend_daily` through a trigger (see migration 0003), whoever writes the rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from metaspend_pipeline.storage.db import is_postgres
from metaspend_pipeline.storage.locks import linear_plans, lock_organization
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    SPEND_KEY,
    SPEND_LEVELS,
    meta_raw_insights,
    meta_spend_daily,
)

VALUE_COLUMNS = ("provider", "ad_account_id", "currency", "spend", "impressions", "clicks")
KEY_COLUMNS = ("organization_id", "date", "level", "campaign_id", "adset_id", "ad_id")


@dataclass
class MergeStats:
    """What a merge did, and the scope's rows per (day, level) and spend per (day, currency)."""

    staged: int = 0
    written: int = 0  # inserted or changed
    deleted: int = 0
    rows_by_day_level: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    @property
    def unchanged(self) -> int:
        return self.staged - self.written


def _insert(conn: sa.Connection):  # type: ignore[no-untyped-def]
    return postgresql.insert if is_postgres(conn) else sqlite.insert


def _raw_scope(organization_id: str, ad_account_ids: Sequence[str], since: dt.date, until: dt.date):  # type: ignore[no-untyped-def]
    r = meta_raw_insights
    return sa.and_(
        r.c.organization_id == organization_id,
        r.c.ad_account_id.in_(list(ad_account_ids)),
        r.c.level.in_(SPEND_LEVELS),
        r.c.date.between(since, until),
    )


def refresh_spend(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str],
    since: dt.date,
    until: dt.date,
    now: dt.datetime,
) -> MergeStats:
    """Make the organization's rows of these ad accounts over [since, until] equal the raw rows,
    in the caller's transaction (which holds the organization's lock from here on)."""
    lock_organization(conn, organization_id)
    linear_plans(conn)
    stats = MergeStats()
    r, t = meta_raw_insights, meta_spend_daily
    scope = _raw_scope(organization_id, ad_account_ids, since, until)

    summary = sa.select(r.c.date, r.c.level, r.c.currency, sa.func.count(), money_sum(conn, r.c.spend))
    for day, level, currency, count, spend in conn.execute(
        summary.where(scope).group_by(r.c.date, r.c.level, r.c.currency)
    ):
        stats.staged += count
        stats.rows_by_day_level[(day, level)] += count
        if level == "CAMPAIGN":
            stats.spend_by_day_currency[(day, currency)] += read_money_sum(spend)

    columns = [*KEY_COLUMNS, *VALUE_COLUMNS]
    source = sa.select(
        *[r.c[c] for c in columns],
        sa.literal(now, t.c.created_at.type).label("created_at"),
        sa.literal(now, t.c.updated_at.type).label("updated_at"),
    ).where(scope)
    statement = _insert(conn)(t).from_select([*columns, "created_at", "updated_at"], source)
    if not _has_rows(conn, organization_id, ad_account_ids, since, until):
        # a first load of the scope (a backfill): nothing to update or delete, and no other writer
        # (the organization's lock is held), so a plain insert, without the per-row conflict check
        conn.execute(statement)
        stats.written = stats.staged
        return stats
    statement = statement.on_conflict_do_update(
        index_elements=list(SPEND_KEY),
        set_={**{c: statement.excluded[c] for c in VALUE_COLUMNS}, "updated_at": statement.excluded.updated_at},
        where=sa.or_(*[t.c[c].is_distinct_from(statement.excluded[c]) for c in VALUE_COLUMNS]),
    )
    if is_postgres(conn):
        written = statement.returning(sa.literal(1).label("one")).cte("written")
        stats.written = conn.execute(sa.select(sa.func.count()).select_from(written)).scalar_one()
    else:
        stats.written = conn.execute(statement).rowcount

    def same(column: str) -> sa.ColumnElement[bool]:
        return sa.func.coalesce(r.c[column], sa.literal_column("''")) == sa.func.coalesce(
            t.c[column], sa.literal_column("''")
        )

    still_there = sa.exists(
        sa.select(sa.literal(1)).where(
            scope,  # bounds the raw side too: only the scope is read, never the account's history
            r.c.organization_id == t.c.organization_id,
            r.c.ad_account_id == t.c.ad_account_id,
            r.c.level == t.c.level,
            r.c.date == t.c.date,
            same("campaign_id"),
            same("adset_id"),
            same("ad_id"),
        )
    )
    stats.deleted = conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id.in_(list(ad_account_ids)))
        .where(t.c.date.between(since, until))
        .where(~still_there)
    ).rowcount

    return stats


def _has_rows(
    conn: sa.Connection, organization_id: str, ad_account_ids: Sequence[str], since: dt.date, until: dt.date
) -> bool:
    t = meta_spend_daily
    query = (
        sa.select(sa.literal(1))
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id.in_(list(ad_account_ids)))
        .where(t.c.date.between(since, until))
        .limit(1)
    )
    return conn.execute(query).first() is not None


def spend_summary(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> tuple[int, dict[str, Decimal]]:
    """Rows of [since, until] and campaign-level spend per currency, summed in SQL."""
    t = meta_spend_daily
    query = (
        sa.select(t.c.level, t.c.currency, sa.func.count(), money_sum(conn, t.c.spend))
        .where(t.c.date.between(since, until))
        .group_by(t.c.level, t.c.currency)
    )
    if organizations:
        query = query.where(t.c.organization_id.in_(list(organizations)))
    rows, spend = 0, defaultdict(Decimal)
    for level, currency, count, amount in conn.execute(query):
        rows += count
        if level == "CAMPAIGN":
            spend[currency] += read_money_sum(amount)
    return rows, dict(spend)
