"""`metaspend breakdown` and `metaspend reach`: who saw the ads, read from the warehouse.

A breakdown report sums an organization's rows over a date range per object and breakdown value (the
daily rows add up exactly, so their sums are exact): spend, impressions, clicks, with the objects' names.
A reach report lists the weekly or monthly rows as Meta counted them, never summed: reach over a month is
not the sum of its weeks. Both read the named views (`meta_spend_by_<set>_named`, `meta_reach_<period>_named`),
so objects carry their names (null where never fetched).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    BREAKDOWN_COLUMNS,
    BREAKDOWN_TABLES,
    REACH_PERIODS,
    REACH_TABLES,
    meta_fetch_log,
)

LEVEL_KEYS = {
    "account": (),
    "campaign": ("campaign_id", "campaign_name"),
    "adset": ("adset_id", "adset_name", "campaign_id", "campaign_name"),
    "ad": ("ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name"),
}
_CAMEL = {
    "campaign_id": "campaignId",
    "campaign_name": "campaignName",
    "adset_id": "adsetId",
    "adset_name": "adsetName",
    "ad_id": "adId",
    "ad_name": "adName",
    "ad_account_id": "adAccountId",
    "publisher_platform": "publisherPlatform",
    "platform_position": "platformPosition",
    "device_platform": "devicePlatform",
    "week_start": "weekStart",
    "month_start": "monthStart",
    "period_end": "periodEnd",
}


def camel(name: str) -> str:
    return _CAMEL.get(name, name)


def named_view(conn: sa.Connection, name: str, base: sa.Table) -> sa.Table:
    """A named view, its columns typed as its base table's: money and ratios read back exactly, as
    Decimal, on every database (a reflected NUMERIC would go through a float on SQLite)."""
    reflected = sa.Table(name, sa.MetaData(), autoload_with=conn)
    return sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(c.name, base.c[c.name].type if c.name in base.c else c.type) for c in reflected.c),
    )


def breakdown_headers(by: str, level: str) -> list[str]:
    return [camel(c) for c in (*LEVEL_KEYS[level], *BREAKDOWN_COLUMNS[by])] + [
        "spend",
        "impressions",
        "clicks",
        "currency",
    ]


def breakdown_report(
    conn: sa.Connection, organization_id: str, by: str, level: str, since: dt.date, until: dt.date
) -> list[dict[str, Any]]:
    """The range's sums per object and breakdown value, largest spend first."""
    v = named_view(conn, f"meta_spend_by_{by}_named", BREAKDOWN_TABLES[by])
    keys = [v.c[c] for c in (*LEVEL_KEYS[level], *BREAKDOWN_COLUMNS[by], "currency")]
    query = (
        sa.select(*keys, money_sum(conn, v.c.spend), sa.func.sum(v.c.impressions), sa.func.sum(v.c.clicks))
        .where(v.c.organization_id == organization_id, v.c.level == level.upper(), v.c.date.between(since, until))
        .group_by(*keys)
    )
    items = []
    for row in conn.execute(query):
        values = dict(zip([k.name for k in keys], row[: len(keys)], strict=True))
        items.append(
            {
                **{camel(k): v for k, v in values.items() if k != "currency"},
                "spend": read_money_sum(row[len(keys)]),
                "impressions": int(row[len(keys) + 1] or 0),
                "clicks": int(row[len(keys) + 2] or 0),
                "currency": values["currency"],
            }
        )
    items.sort(key=lambda i: (-i["spend"], *(str(i.get(camel(c)) or "") for c in BREAKDOWN_COLUMNS[by])))
    return items


def reach_headers(period: str, level: str) -> list[str]:
    return [
        camel(REACH_PERIODS[period]),
        "periodEnd",
        *(camel(c) for c in LEVEL_KEYS[level]),
        *(("adAccountId",) if level == "account" else ()),
        "reach",
        "frequency",
        "impressions",
        "spend",
        "currency",
    ]


def reach_report(
    conn: sa.Connection, organization_id: str, period: str, level: str, since: dt.date, until: dt.date
) -> list[dict[str, Any]]:
    """The rows of the periods starting in [since, until], as Meta counted them: never summed."""
    v = named_view(conn, f"{REACH_TABLES[period].name}_named", REACH_TABLES[period])
    start = REACH_PERIODS[period]
    columns = [start, "period_end", *LEVEL_KEYS[level], "ad_account_id"]
    columns += ["reach", "frequency", "impressions", "spend", "currency"]
    query = (
        sa.select(*(v.c[c] for c in columns))
        .where(v.c.organization_id == organization_id, v.c.level == level.upper(), v.c[start].between(since, until))
        .order_by(v.c[start], v.c.spend.desc())
    )
    items = []
    for row in conn.execute(query):
        item = {
            camel(c): value.isoformat() if isinstance(value, dt.date) else value
            for c, value in zip(columns, row, strict=True)
        }
        if level != "account":
            del item["adAccountId"]
        items.append(item)
    return items


def unloaded_days(
    conn: sa.Connection, organization_id: str, report: str, since: dt.date, until: dt.date
) -> list[dt.date]:
    """Days of the range no successful fetch of `report` (breakdowns, reach) covered for the organization."""
    log = meta_fetch_log
    loaded: set[dt.date] = set()
    for first, last in conn.execute(
        sa.select(log.c.since, log.c.until).where(
            log.c.organization_id == organization_id,
            log.c.report == report,
            log.c.status == "OK",
            log.c.since <= until,
            log.c.until >= since,
        )
    ):
        day = max(first, since)
        while day <= min(last, until):
            loaded.add(day)
            day += dt.timedelta(days=1)
    total = (until - since).days + 1
    return [d for d in (since + dt.timedelta(days=i) for i in range(total)) if d not in loaded]


def default_reach_range(period: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """Without --from / --to: the last four weeks, or the last three months, up to yesterday."""
    yesterday = today - dt.timedelta(days=1)
    if period == "week":
        monday = yesterday - dt.timedelta(days=yesterday.weekday())
        return monday - dt.timedelta(weeks=3), yesterday
    first = yesterday.replace(day=1)
    for _ in range(2):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return first, yesterday
