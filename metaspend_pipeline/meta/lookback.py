"""How far back Meta's insights reach, and the refusal of a range that starts before.

Plain code, no Dagster. Insights reach back 37 months (older ranges: error #3018). Since 2026-01-12,
breakdowns of unique counts (reach, frequency) and every hourly breakdown reach back 13 months. A
range that starts earlier is refused before any request, naming the limit and the first day Meta
serves, rather than sent to fail at Meta (see docs/operations.md#how-far-back).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from metaspend_pipeline.errors import InvalidInputError


@dataclass(frozen=True)
class Lookback:
    months: int
    what: str  # what the limit applies to, as a message names it


INSIGHTS = Lookback(37, "Meta's insights")
# Unique counts (reach, frequency) broken down, and hourly breakdowns.
UNIQUE_COUNTS_AND_HOURLY = Lookback(13, "breakdowns of unique counts (reach) and hourly breakdowns in Meta's insights")
# The reach tables: Meta's pages disagree on whether reach without breakdowns past 13 months fails or
# comes back without reach and frequency, so the reach assets keep to 13 months too.
UNIQUE_COUNTS = Lookback(13, "Meta's unique counts (reach, frequency)")


class RangeTooOldError(InvalidInputError):
    """A range starts before the first day Meta serves."""


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day of the month `months` months before `day`, or that month's last day."""
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def first_allowed_day(today: dt.date, lookback: Lookback = INSIGHTS) -> dt.date:
    """The first day Meta serves today under `lookback`."""
    return months_before(today, lookback.months)


def refuse_too_old(since: dt.date, until: dt.date, today: dt.date, lookback: Lookback = INSIGHTS) -> None:
    """RangeTooOldError when [since, until] starts before `first_allowed_day`, naming the limit and the day."""
    first = first_allowed_day(today, lookback)
    if since < first:
        raise RangeTooOldError(
            f"the range {since}..{until} starts before {first}: {lookback.what} reach back {lookback.months} "
            f"months, so the first day Meta serves today ({today}) is {first}; start the range on or after {first}"
        )
