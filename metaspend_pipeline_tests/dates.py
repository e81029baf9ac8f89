"""The tests' dates, relative to today (UTC), so the suite passes on any date.

The sandbox refuses ranges older than 37 months and serves nothing after today, and Dagster's
partitions end yesterday, both by the process's clock: fixed dates would make a time bomb. The
tests' "month" is a stretch of days well inside both limits: `day(1)` is 45 days ago, and every
day a test uses (`day(-29)` to `day(14)`) lies between 75 and 31 days ago, after the default
META_SPEND_START_DATE (2024-01-01) for any clock from 2024-03-17 on.

Tests that never reach the sandbox or Dagster's partitions (hand-computed ROAS, storage round trips)
keep their fixed dates: no clock can change their meaning.
"""

from __future__ import annotations

import datetime as dt

TODAY = dt.datetime.now(dt.UTC).date()
_DAY_ZERO = TODAY - dt.timedelta(days=46)


def day(n: int) -> dt.date:
    """The n-th day of the tests' month: day(1) is 45 days ago, day(0) the day before it."""
    return _DAY_ZERO + dt.timedelta(days=n)


def iso(n: int) -> str:
    """`day(n)` as a partition key and CLI argument: YYYY-MM-DD."""
    return day(n).isoformat()
