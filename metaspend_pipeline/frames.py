"""The reporting tables as pandas DataFrames, for analysts in a notebook.

    from metaspend_pipeline import frames

    roas = frames.roas("org-123", "2026-11-01", "2026-11-30", group="campaign")
    by_age = frames.breakdown("org-123", "age_gender", "2026-11-01", "2026-11-30")
    monthly = frames.reach("org-123", "month", "2026-09-01", "2026-11-30")

Each returns the daily (or weekly, monthly) rows of one organization over a date range from the named
views, so every row carries its campaign's, ad set's and ad's names (None where never fetched). Money
and ratios stay `decimal.Decimal` (an `object` column): exact, as in the warehouse, never float. Sum
money with `sum()` or `df.groupby(...)["spend"].sum()` (exact on Decimal); reach and frequency must not
be summed across periods or objects: each row is Meta's own count for its period and object.

The database is METASPEND_DATABASE_URL unless `database_url` is given; a BI role's URL works too.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metaspend_pipeline.audience import named_view
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import (
    BREAKDOWN_TABLES,
    NAMED_ROAS_VIEWS,
    REACH_PERIODS,
    REACH_TABLES,
    ROAS_TABLES,
)

if TYPE_CHECKING:
    import pandas as pd

_REACH_VIEWS = {"week": "meta_reach_weekly_named", "month": "meta_reach_monthly_named"}


def _day(value: dt.date | str, name: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not a date as YYYY-MM-DD") from None


def _frame(
    view: str,
    base: sa.Table,
    organization_id: str,
    since: dt.date | str,
    until: dt.date | str,
    day_column: str,
    database_url: str | None,
    level: str | None = None,
) -> pd.DataFrame:
    import pandas as pd

    first, last = _day(since, "since"), _day(until, "until")
    if first > last:
        raise InvalidInputError(f"since {first} is after until {last}")
    engine = db.engine_for(database_url or Settings.from_env().database_url)
    with engine.connect() as conn:
        table = named_view(conn, view, base)
        query = (
            sa.select(table)
            .where(table.c.organization_id == organization_id, table.c[day_column].between(first, last))
            .order_by(table.c[day_column])
        )
        if level is not None:
            query = query.where(table.c.level == level.upper())
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def roas(
    organization_id: str,
    since: dt.date | str,
    until: dt.date | str,
    group: str = "campaign",
    database_url: str | None = None,
) -> pd.DataFrame:
    """`meta_roas_by_<group>_named`: one row per day and campaign (ad set, ad), with names."""
    if group not in NAMED_ROAS_VIEWS:
        raise InvalidInputError(f"group must be one of {', '.join(NAMED_ROAS_VIEWS)}, got {group!r}")
    return _frame(NAMED_ROAS_VIEWS[group], ROAS_TABLES[group], organization_id, since, until, "date", database_url)


def breakdown(
    organization_id: str,
    by: str,
    since: dt.date | str,
    until: dt.date | str,
    level: str = "campaign",
    database_url: str | None = None,
) -> pd.DataFrame:
    """`meta_spend_by_<by>_named` (age_gender, country, placement): one row per day, object and value."""
    if by not in BREAKDOWN_SETS:
        raise InvalidInputError(f"by must be one of {', '.join(BREAKDOWN_SETS)}, got {by!r}")
    view = f"meta_spend_by_{by}_named"
    return _frame(view, BREAKDOWN_TABLES[by], organization_id, since, until, "date", database_url, level)


def reach(
    organization_id: str,
    period: str,
    since: dt.date | str,
    until: dt.date | str,
    level: str | None = None,
    database_url: str | None = None,
) -> pd.DataFrame:
    """`meta_reach_weekly_named` or `meta_reach_monthly_named`: one row per period (starting in the
    range) and object, as Meta counted it; `level` limits it to one level (ACCOUNT, CAMPAIGN, ...)."""
    if period not in _REACH_VIEWS:
        raise InvalidInputError(f"period must be week or month, got {period!r}")
    view, start = _REACH_VIEWS[period], REACH_PERIODS[period]
    return _frame(view, REACH_TABLES[period], organization_id, since, until, start, database_url, level)
