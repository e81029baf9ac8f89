"""How far back Meta's insights reach: ranges older than these are refused up front, naming the limit
and the first allowed day, instead of being sent to fail at Meta (or, for reach, to come back without it).

- Insights: 37 months (older ranges: error 3018).
- Unique counts (reach, frequency) with breakdowns, and hourly breakdowns: 13 months since 2026-01-12;
  Meta's own pages disagree on whether reach without breakdowns older than that fails or comes back
  empty, so the pipeline's reach tables keep to 13 months too.
"""

from __future__ import annotations

import datetime as dt

from metaspend_pipeline.errors import InvalidInputError

INSIGHTS_MONTHS = 37
UNIQUE_COUNTS_MONTHS = 13


class LookbackError(InvalidInputError):
    """A range starts before the oldest day Meta serves for it."""


def first_allowed_day(today: dt.date, months: int) -> dt.date:
    """The oldest day Meta serves `months` months back from `today` (a day of month past the 28th is
    read as the 28th, so that every month has it)."""
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return dt.date(year, month + 1, min(today.day, 28))


def check_lookback(since: dt.date, today: dt.date, months: int, what: str) -> None:
    """Raise when [since, ...] reaches further back than Meta keeps `what`."""
    first = first_allowed_day(today, months)
    if since < first:
        raise LookbackError(
            f"{what} from {since} reaches back further than Meta keeps it ({months} months): the first "
            f"day Meta serves is {first}; start the range on or after it"
        )
