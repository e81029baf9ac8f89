"""The fewest requests that could have fetched what a benchmark's warehouse holds.

Meta answers one series of requests per ad account, level (and breakdown set) and range; the
pipeline asks for a range in windows of META_FETCH_WINDOW_DAYS. So the floor of a window is one
request per page of its rows, and at least one: `sum(max(1, ceil(rows / page_size)))` over ad
accounts, levels, sets and windows. Reach is one request per ad account, level and period (plus
pages), counted the same way by the caller.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import sqlalchemy as sa

from metaspend_pipeline.ingest import windows
from metaspend_pipeline.storage.schema import meta_raw_breakdowns, meta_raw_insights


def _floor(counts: dict[tuple, int], page_size: int) -> int:
    return sum(max(1, math.ceil(n / page_size)) for n in counts.values())


def request_floors(
    conn: sa.Connection,
    accounts: list[str],
    since: dt.date,
    until: dt.date,
    window_days: int,
    page_size: int,
    levels: tuple[str, ...] = ("ACCOUNT", "CAMPAIGN", "ADSET", "AD"),
    breakdowns: tuple[str, ...] = (),
    breakdown_levels: tuple[str, ...] = ("CAMPAIGN",),
) -> dict[str, int]:
    """{"insights": floor, "breakdowns": floor}: every (ad account, level, window) counts, with or
    without rows (an empty window still costs its one request)."""
    cuts = list(windows(since, until, window_days))

    def window_of(day: dt.date) -> int:
        return next(i for i, (start, end) in enumerate(cuts) if start <= day <= end)

    insights: dict[tuple, int] = {(a, level, w): 0 for a in accounts for level in levels for w in range(len(cuts))}
    r = meta_raw_insights
    for account, level, day, n in conn.execute(
        sa.select(r.c.ad_account_id, r.c.level, r.c.date, sa.func.count())
        .where(r.c.date.between(since, until))
        .group_by(r.c.ad_account_id, r.c.level, r.c.date)
    ):
        insights[(account, level, window_of(day))] += n
    split: dict[tuple, int] = defaultdict(int)
    for a in accounts:
        for name in breakdowns:
            for level in breakdown_levels:
                for w in range(len(cuts)):
                    split[(a, name, level, w)] = 0
    b = meta_raw_breakdowns
    for account, name, level, day, n in conn.execute(
        sa.select(b.c.ad_account_id, b.c.breakdown, b.c.level, b.c.date, sa.func.count())
        .where(b.c.date.between(since, until))
        .group_by(b.c.ad_account_id, b.c.breakdown, b.c.level, b.c.date)
    ):
        split[(account, name, level, window_of(day))] += n
    return {"insights": _floor(insights, page_size), "breakdowns": _floor(split, page_size)}
