"""`meta_spend_daily`: rebuilt from the raw rows with set-based statements (`storage.merge`), and the
reads on it.

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

from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.merge import MergeSpec, merge
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    SPEND_KEY,
    SPEND_LEVELS,
    meta_raw_insights,
    meta_spend_daily,
)

VALUE_COLUMNS = ("provider", "ad_account_id", "currency", "spend", "impressions", "clicks")
KEY_COLUMNS = ("organization_id", "date", "level", "campaign_id", "adset_id", "ad_id")
SPEND_MERGE = MergeSpec(
    raw=meta_raw_insights,
    target=meta_spend_daily,
    key=SPEND_KEY,
    identity={c: c for c in (*KEY_COLUMNS, "ad_account_id")},
    values={c: c for c in VALUE_COLUMNS},
    optional=frozenset({"campaign_id", "adset_id", "ad_id"}),
)


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
    stats = MergeStats()
    r, t = meta_raw_insights, meta_spend_daily
    raw_scope = sa.and_(
        r.c.organization_id == organization_id,
        r.c.ad_account_id.in_(list(ad_account_ids)),
        r.c.level.in_(SPEND_LEVELS),
        r.c.date.between(since, until),
    )
    summary = sa.select(r.c.date, r.c.level, r.c.currency, sa.func.count(), money_sum(conn, r.c.spend))
    for day, level, currency, count, spend in conn.execute(
        summary.where(raw_scope).group_by(r.c.date, r.c.level, r.c.currency)
    ):
        stats.staged += count
        stats.rows_by_day_level[(day, level)] += count
        if level == "CAMPAIGN":
            stats.spend_by_day_currency[(day, currency)] += read_money_sum(spend)
    target_scope = sa.and_(
        t.c.organization_id == organization_id,
        t.c.ad_account_id.in_(list(ad_account_ids)),
        t.c.date.between(since, until),
    )
    counts = merge(conn, SPEND_MERGE, raw_scope, target_scope, now)
    stats.written, stats.deleted = counts.written, counts.deleted
    return stats


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
