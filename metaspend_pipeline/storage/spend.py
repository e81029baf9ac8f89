"""`meta_spend_daily`: the one write path (staging table, one merge) and the reads on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from metaspend_pipeline.storage.db import is_postgres, utcnow
from metaspend_pipeline.storage.raw import bulk_insert
from metaspend_pipeline.storage.schema import SPEND_KEY, Money, meta_spend_daily

VALUE_COLUMNS = ("provider", "ad_account_id", "currency", "spend", "impressions", "clicks")
KEY_COLUMNS = ("organization_id", "date", "level", "campaign_id", "adset_id", "ad_id")


def _staging_table() -> sa.Table:
    """A temporary table shaped like the rows the merge takes; it lives for one transaction."""
    return sa.Table(
        "meta_spend_staging",
        sa.MetaData(),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("campaign_id", sa.Text),
        sa.Column("adset_id", sa.Text),
        sa.Column("ad_id", sa.Text),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spend", Money, nullable=False),
        sa.Column("impressions", sa.BigInteger),
        sa.Column("clicks", sa.BigInteger),
        prefixes=["TEMPORARY"],
    )


@dataclass(frozen=True)
class SpendScope:
    """What one merge replaces: an organization's ad account over a date range (every level)."""

    organization_id: str
    ad_account_id: str
    since: dt.date
    until: dt.date


@dataclass(frozen=True)
class MergeStats:
    staged: int
    written: int  # inserted or changed
    deleted: int

    @property
    def unchanged(self) -> int:
        return self.staged - self.written


def replace_spend(conn: sa.Connection, scopes: Sequence[SpendScope], rows: Iterable[Mapping[str, Any]]) -> MergeStats:
    """Make the scopes' rows equal `rows`, in the caller's transaction.

    Rows are bulk-loaded into a temporary table, then merged in one statement: new keys are
    inserted, changed rows updated (created_at kept), identical rows left alone; rows of the
    scopes that `rows` no longer has are deleted. A rerun with the same rows changes nothing.
    """
    staging = _staging_table()
    staging.create(conn)  # on an error the caller's rollback removes it with everything else
    staged = bulk_insert(conn, staging, rows)
    written = _merge(conn, staging)
    deleted = sum(_delete_missing(conn, staging, scope) for scope in scopes)
    staging.drop(conn)
    return MergeStats(staged=staged, written=written, deleted=deleted)


def _merge(conn: sa.Connection, staging: sa.Table) -> int:
    t = meta_spend_daily
    now = utcnow()
    insert = (postgresql.insert if is_postgres(conn) else sqlite.insert)(t)
    columns = [*KEY_COLUMNS, *VALUE_COLUMNS]
    source = sa.select(
        *[staging.c[c] for c in columns],
        sa.literal(now, t.c.created_at.type).label("created_at"),
        sa.literal(now, t.c.updated_at.type).label("updated_at"),
    ).where(sa.true())  # SQLite needs a WHERE to tell INSERT ... SELECT from its ON CONFLICT
    statement = insert.from_select([*columns, "created_at", "updated_at"], source)
    statement = statement.on_conflict_do_update(
        index_elements=list(SPEND_KEY),
        set_={**{c: statement.excluded[c] for c in VALUE_COLUMNS}, "updated_at": statement.excluded.updated_at},
        where=sa.or_(*[t.c[c].is_distinct_from(statement.excluded[c]) for c in VALUE_COLUMNS]),
    )
    # RETURNING counts what was written: rowcount is -1 for this statement on some drivers
    return sum(1 for _ in conn.execute(statement.returning(sa.literal(1))))


def _same_key(a: sa.Table, b: sa.Table) -> sa.ColumnElement[bool]:
    return sa.and_(
        a.c.organization_id == b.c.organization_id,
        a.c.date == b.c.date,
        a.c.level == b.c.level,
        *[
            sa.func.coalesce(a.c[c], sa.literal_column("''")) == sa.func.coalesce(b.c[c], sa.literal_column("''"))
            for c in ("campaign_id", "adset_id", "ad_id")
        ],
    )


def _delete_missing(conn: sa.Connection, staging: sa.Table, scope: SpendScope) -> int:
    t = meta_spend_daily
    statement = (
        t.delete()
        .where(t.c.organization_id == scope.organization_id)
        .where(t.c.ad_account_id == scope.ad_account_id)
        .where(t.c.date.between(scope.since, scope.until))
        .where(~sa.exists(sa.select(sa.literal(1)).select_from(staging).where(_same_key(staging, t))))
    )
    # RETURNING counts what was written: rowcount is -1 for this statement on some drivers
    return sum(1 for _ in conn.execute(statement.returning(sa.literal(1))))


@dataclass(frozen=True)
class SpendRow:
    organization_id: str
    date: dt.date
    level: str
    ad_account_id: str
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    currency: str
    spend: Decimal


def iter_spend(
    conn: sa.Connection,
    since: dt.date,
    until: dt.date,
    organizations: Sequence[str] | None = None,
    levels: Sequence[str] | None = None,
) -> Iterator[SpendRow]:
    t = meta_spend_daily
    query = sa.select(
        t.c.organization_id,
        t.c.date,
        t.c.level,
        t.c.ad_account_id,
        t.c.campaign_id,
        t.c.adset_id,
        t.c.ad_id,
        t.c.currency,
        t.c.spend,
    ).where(t.c.date.between(since, until))
    if organizations is not None:
        query = query.where(t.c.organization_id.in_(list(organizations)))
    if levels is not None:
        query = query.where(t.c.level.in_(list(levels)))
    query = query.order_by(t.c.organization_id, t.c.date, t.c.level, t.c.id)
    for r in conn.execute(query, execution_options={"stream_results": True, "yield_per": 2000}):
        yield SpendRow(*r)


def group_ad_accounts(conn: sa.Connection, organization_id: str) -> dict[tuple[str, str], str]:
    """(level, object id) -> ad account, for every object the organization ever spent on."""
    t = meta_spend_daily
    out: dict[tuple[str, str], str] = {}
    query = (
        sa.select(t.c.level, t.c.campaign_id, t.c.adset_id, t.c.ad_id, t.c.ad_account_id)
        .where(t.c.organization_id == organization_id)
        .distinct()
    )
    for level, campaign_id, adset_id, ad_id, account in conn.execute(query):
        object_id = {"CAMPAIGN": campaign_id, "ADSET": adset_id, "AD": ad_id}[level]
        if object_id:
            out[(level, object_id)] = account
    return out
