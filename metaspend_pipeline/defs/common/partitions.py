"""The days every asset shares: daily partitions from META_SPEND_START_DATE to yesterday (UTC), one run
per partition range, and the freshness deadline of the daily spend.

Assets are declared with the defaults below (`Settings.from_env({})`: no environment is read when a
module is imported). `metaspend_pipeline.definitions` swaps in the ones the environment says when
Dagster loads the code location, for every asset declared with a default.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from metaspend_pipeline.meta.lookback import Lookback, RangeTooOldError, refuse_too_old
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.db import utcnow


def build_spend_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day from the settings' META_SPEND_START_DATE to yesterday (UTC)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.spend_start_date.isoformat(),
        timezone="UTC",
        end_offset=0,  # the last partition is yesterday: today is not over anywhere yet
    )


def build_week_partitions(settings: Settings) -> dg.WeeklyPartitionsDefinition:
    """One partition per week, Monday to Sunday, from the week of META_SPEND_START_DATE to the current
    week (not over yet: its partition is rewritten each time it runs). Days are each ad account's."""
    first = settings.spend_start_date - dt.timedelta(days=settings.spend_start_date.weekday())
    return dg.WeeklyPartitionsDefinition(start_date=first.isoformat(), day_offset=1, timezone="UTC", end_offset=1)


def build_month_partitions(settings: Settings) -> dg.MonthlyPartitionsDefinition:
    """One partition per calendar month, from that of META_SPEND_START_DATE to the current month."""
    first = settings.spend_start_date.replace(day=1)
    return dg.MonthlyPartitionsDefinition(start_date=first.isoformat(), timezone="UTC", end_offset=1)


def build_spend_freshness_policy(settings: Settings) -> dg.FreshnessPolicy:
    """meta_spend_daily materialized in the 24 hours before each METASPEND_FRESHNESS_DEADLINE_CRON tick."""
    return dg.FreshnessPolicy.cron(
        deadline_cron=settings.freshness_deadline_cron,
        lower_bound_delta=dt.timedelta(hours=24),
        timezone=settings.schedule_timezone,
    )


DEFAULT_SETTINGS = Settings.from_env({})

# What the assets are declared with; `settings_for_assets` maps each to the environment's.
meta_spend_partitions = build_spend_partitions(DEFAULT_SETTINGS)
week_partitions = build_week_partitions(DEFAULT_SETTINGS)
month_partitions = build_month_partitions(DEFAULT_SETTINGS)
spend_freshness_policy = build_spend_freshness_policy(DEFAULT_SETTINGS)

# Partition ranges run as one run each: the only policy `dagster asset materialize
# --partition-range` accepts, and the one that turns a range into one set of Meta requests
# (bounded inside the run by META_FETCH_WINDOW_DAYS; see docs/architecture.md).
meta_spend_backfill_policy = dg.BackfillPolicy.single_run()


def settings_for_assets(settings: Settings) -> list[tuple[str, object, object]]:
    """(asset attribute, the default an asset is declared with, the value the settings give)."""
    return [
        ("partitions_def", meta_spend_partitions, build_spend_partitions(settings)),
        ("partitions_def", week_partitions, build_week_partitions(settings)),
        ("partitions_def", month_partitions, build_month_partitions(settings)),
        ("freshness_policy", spend_freshness_policy, build_spend_freshness_policy(settings)),
    ]


def period_last_day(period: str, first: dt.date) -> dt.date:
    """The last day of the day, week (Monday to Sunday) or calendar month that starts on `first`."""
    if period == "day":
        return first
    if period == "week":
        return first + dt.timedelta(days=6 - first.weekday())
    return (first.replace(day=1) + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def _key_day(key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(key)
    except ValueError:
        raise dg.Failure(description=f"partition key {key!r} is not a day as YYYY-MM-DD") from None


def partition_dates(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    lookback: Lookback | None = None,
    period: str = "day",
) -> tuple[dt.date, dt.date]:
    """The first and last day of the run's partition (or partition range) of days, weeks or months; a
    reversed range is an error, and so, for Meta's data (`lookback`), is a range starting before the first
    day Meta serves. Read from the partition keys, each a period's first day, so that it holds also in a
    run that has the range only in its tags (its checks run alone, say)."""
    op_context = context.op_execution_context if isinstance(context, dg.AssetCheckExecutionContext) else context
    keys = op_context.partition_key_range
    since, last = _key_day(keys.start), _key_day(keys.end)
    if since > last:
        raise dg.Failure(
            description=f"the partition range {keys.start}...{keys.end} is empty: it starts after it ends; "
            f"give the earlier {period} first ({keys.end}...{keys.start})"
        )
    until = period_last_day(period, last)
    if lookback is not None:
        refuse_old_range(since, until, lookback)
    return since, until


def refuse_old_range(since: dt.date, until: dt.date, lookback: Lookback) -> None:
    """A Failure, before any request, for a range Meta would refuse (see `meta.lookback`)."""
    try:
        refuse_too_old(since, until, utcnow().date(), lookback)
    except RangeTooOldError as exc:
        raise dg.Failure(description=str(exc)) from None


def days(since: dt.date, until: dt.date) -> list[dt.date]:
    return [since + dt.timedelta(days=i) for i in range((until - since).days + 1)]
