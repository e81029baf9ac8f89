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
spend_freshness_policy = build_spend_freshness_policy(DEFAULT_SETTINGS)

# Partition ranges run as one run each: the only policy `dagster asset materialize
# --partition-range` accepts, and the one that turns a range into one set of Meta requests
# (bounded inside the run by META_FETCH_WINDOW_DAYS; see docs/architecture.md).
meta_spend_backfill_policy = dg.BackfillPolicy.single_run()


def settings_for_assets(settings: Settings) -> dict[str, tuple[object, object]]:
    """Per asset attribute, (the default it is declared with, the value the settings give)."""
    return {
        "partitions_def": (meta_spend_partitions, build_spend_partitions(settings)),
        "freshness_policy": (spend_freshness_policy, build_spend_freshness_policy(settings)),
    }


def partition_dates(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, lookback: Lookback | None = None
) -> tuple[dt.date, dt.date]:
    """The first and last day of the run's partition (or partition range); a reversed range is an error,
    and so, for Meta's data (`lookback`), is a range starting before the first day Meta serves."""
    window = context.partition_time_window
    since, until = window.start.date(), (window.end - dt.timedelta(days=1)).date()
    if since > until:
        raise dg.Failure(
            description=f"the partition range {since}...{until} is empty: it starts after it ends; "
            f"give the earlier day first ({until}...{since})"
        )
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
