"""Meta's reach rows (`meta_raw_reach`) and the tables built from them: `meta_reach_weekly`,
`meta_reach_monthly`.

A period's row is Meta's count over the whole period for one object: it is stored as Meta sent it,
never computed from days or from children. A period that is not over yet is stored as it stands
(`period_end` says up to which day) and rewritten when its partition runs again. Written like the
other raw tables: the scope of (organization, ad account, period, level, period start) is replaced
in one transaction under the organization's lock, then merged by `storage.merge`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from metaspend_pipeline.meta.models import ReachRow
from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.merge import MergeCounts, MergeSpec, merge
from metaspend_pipeline.storage.schema import REACH_KEYS, REACH_PERIODS, REACH_TABLES, meta_raw_reach

RAW_COLUMNS = (
    "organization_id",
    "provider",
    "ad_account_id",
    "level",
    "period",
    "period_start",
    "period_end",
    "campaign_id",
    "adset_id",
    "ad_id",
    "row",
    "currency",
    "reach",
    "frequency",
    "impressions",
    "spend",
    "fetched_at",
)
_IDS = ("campaign_id", "adset_id", "ad_id")
MERGES = {
    period: MergeSpec(
        raw=meta_raw_reach,
        target=REACH_TABLES[period],
        key=REACH_KEYS[period],
        identity={
            **{c: c for c in ("organization_id", "ad_account_id", "level", *_IDS)},
            start: "period_start",
        },
        values={c: c for c in ("period_end", "currency", "reach", "frequency", "impressions", "spend")},
        optional=frozenset(_IDS),
        timestamps=("updated_at",),
    )
    for period, start in REACH_PERIODS.items()
}


def replace_raw_reach(
    conn: sa.Connection,
    *,
    organization_id: str,
    provider: str,
    ad_account_id: str,
    period: str,
    level: str,
    period_start: dt.date,
    rows: Iterable[ReachRow],
    fetched_at: dt.datetime,
) -> int:
    """Replace the (organization, ad account, period, level, period start) raw rows with `rows`, in
    the caller's transaction, under the organization's lock."""
    lock_organization(conn, organization_id)
    t = meta_raw_reach
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id == ad_account_id)
        .where(t.c.period == period)
        .where(t.c.level == level)
        .where(t.c.period_start == period_start)
    )
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
                period,
                period_start,
                r.period_end,
                r.campaign_id,
                r.adset_id,
                r.ad_id,
                dict(r.raw),
                r.currency,
                r.reach,
                r.frequency,
                r.impressions,
                r.spend,
                fetched_at,
            )
            for r in rows
        ),
    )


def refresh_reach(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str],
    period: str,
    period_start: dt.date,
    now: dt.datetime,
) -> MergeCounts:
    """Make the organization's rows of `period` starting on `period_start` for these ad accounts equal
    its raw rows, in the caller's transaction (under the organization's lock)."""
    lock_organization(conn, organization_id)
    r, t = meta_raw_reach, REACH_TABLES[period]
    raw_scope = sa.and_(
        r.c.organization_id == organization_id,
        r.c.ad_account_id.in_(list(ad_account_ids)),
        r.c.period == period,
        r.c.period_start == period_start,
    )
    target_scope = sa.and_(
        t.c.organization_id == organization_id,
        t.c.ad_account_id.in_(list(ad_account_ids)),
        t.c[REACH_PERIODS[period]] == period_start,
    )
    return merge(conn, MERGES[period], raw_scope, target_scope, now)


def reach_scopes(
    conn: sa.Connection, period: str, period_start: dt.date, organizations: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Organizations and their ad accounts with raw reach rows of the period."""
    t = meta_raw_reach
    query = (
        sa.select(t.c.organization_id, t.c.ad_account_id)
        .where(t.c.period == period, t.c.period_start == period_start)
        .distinct()
        .order_by(t.c.organization_id, t.c.ad_account_id)
    )
    if organizations is not None:
        query = query.where(t.c.organization_id.in_(list(organizations)))
    out: dict[str, list[str]] = {}
    for org, account in conn.execute(query):
        out.setdefault(org, []).append(account)
    return out
