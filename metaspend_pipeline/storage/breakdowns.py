"""Meta's breakdown rows (`meta_raw_breakdowns`) and the tables built from them: `meta_spend_by_age_gender`,
`meta_spend_by_country`, `meta_spend_by_placement`.

Written like `meta_raw_insights` and `meta_spend_daily`: a scope of raw rows is replaced in one
transaction (delete by a range of the unique key's index, then COPY), and each table is merged from
the raw rows by the one set-based merge (`storage.merge`), under the organization's lock.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.merge import MergeSpec, merge
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    BREAKDOWN_COLUMNS,
    BREAKDOWN_DIMENSIONS,
    BREAKDOWN_KEYS,
    BREAKDOWN_TABLES,
    SPEND_LEVELS,
    meta_raw_breakdowns,
)

RAW_COLUMNS = (
    "organization_id",
    "provider",
    "ad_account_id",
    "level",
    "breakdown",
    "date",
    "campaign_id",
    "adset_id",
    "ad_id",
    *BREAKDOWN_DIMENSIONS,
    "row",
    "currency",
    "spend",
    "impressions",
    "clicks",
    "fetched_at",
)
_IDS = ("campaign_id", "adset_id", "ad_id")
MERGES = {
    name: MergeSpec(
        raw=meta_raw_breakdowns,
        target=BREAKDOWN_TABLES[name],
        key=BREAKDOWN_KEYS[name],
        identity={
            **{c: c for c in ("organization_id", "ad_account_id", "date", "level", *_IDS)},
            **dict(zip(columns, BREAKDOWN_DIMENSIONS, strict=False)),
        },
        values={c: c for c in ("provider", "ad_account_id", "currency", "spend", "impressions", "clicks")},
        optional=frozenset(_IDS),
    )
    for name, columns in BREAKDOWN_COLUMNS.items()
}


def replace_raw_breakdowns(
    conn: sa.Connection,
    *,
    organization_id: str,
    provider: str,
    ad_account_id: str,
    breakdown: str,
    level: str,
    since: dt.date,
    until: dt.date,
    rows: Iterable[InsightRow],
    fetched_at: dt.datetime,
) -> int:
    """Replace the (organization, ad account, breakdown, level) raw rows of [since, until] with `rows`,
    in the caller's transaction, under the organization's lock."""
    lock_organization(conn, organization_id)
    t = meta_raw_breakdowns
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id == ad_account_id)
        .where(t.c.breakdown == breakdown)
        .where(t.c.level == level)
        .where(t.c.date.between(since, until))
    )
    width = len(BREAKDOWN_DIMENSIONS)
    return load_rows(
        conn,
        t,
        RAW_COLUMNS,
        (
            (
                organization_id,
                provider,
                ad_account_id,
                level,
                breakdown,
                r.date,
                r.campaign_id,
                r.adset_id,
                r.ad_id,
                *r.breakdown,
                *("",) * (width - len(r.breakdown)),
                dict(r.raw),
                r.currency,
                r.spend,
                r.impressions,
                r.clicks,
                fetched_at,
            )
            for r in rows
        ),
    )


@dataclass
class BreakdownStats:
    """What a merge of one breakdown did, and its rows per (day, level) and spend per (day, currency)."""

    staged: int = 0
    written: int = 0
    deleted: int = 0
    rows_by_day_level: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))


def refresh_breakdown(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str],
    breakdown: str,
    since: dt.date,
    until: dt.date,
    now: dt.datetime,
) -> BreakdownStats:
    """Make the organization's `meta_spend_by_<breakdown>` rows of these ad accounts over [since, until]
    equal its raw rows, in the caller's transaction (under the organization's lock)."""
    lock_organization(conn, organization_id)
    r, t = meta_raw_breakdowns, BREAKDOWN_TABLES[breakdown]
    stats = BreakdownStats()
    raw_scope = sa.and_(
        r.c.organization_id == organization_id,
        r.c.ad_account_id.in_(list(ad_account_ids)),
        r.c.breakdown == breakdown,
        r.c.date.between(since, until),
    )
    summary = sa.select(r.c.date, r.c.level, r.c.currency, sa.func.count(), money_sum(conn, r.c.spend))
    spend: dict[tuple[dt.date, str, str], Decimal] = {}
    for day, level, currency, count, amount in conn.execute(
        summary.where(raw_scope).group_by(r.c.date, r.c.level, r.c.currency)
    ):
        stats.staged += count
        stats.rows_by_day_level[(day, level)] += count
        spend[(day, level, currency)] = read_money_sum(amount)
    # a day's spend once: each level repeats it, so that of the highest level fetched
    top = {}
    for day, level, _ in spend:
        top[day] = min(top.get(day, level), level, key=SPEND_LEVELS.index)
    for (day, level, currency), amount in spend.items():
        if level == top[day]:
            stats.spend_by_day_currency[(day, currency)] += amount
    target_scope = sa.and_(
        t.c.organization_id == organization_id,
        t.c.ad_account_id.in_(list(ad_account_ids)),
        t.c.date.between(since, until),
    )
    counts = merge(conn, MERGES[breakdown], raw_scope, target_scope, now)
    stats.written, stats.deleted = counts.written, counts.deleted
    return stats
