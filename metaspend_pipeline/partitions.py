"""The daily partitions every asset shares: one per day from META_SPEND_START_DATE to yesterday (UTC)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from metaspend_pipeline.settings import Settings


def build_spend_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day from the settings' META_SPEND_START_DATE to yesterday (UTC)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.spend_start_date.isoformat(),
        timezone="UTC",
        end_offset=0,  # the last partition is yesterday: today is not over anywhere yet
    )


# The partitions the assets are declared with: the defaults, whatever the environment says at import.
# `definitions.build_definitions` gives every asset the partitions of the settings it is built from.
meta_spend_partitions = build_spend_partitions(Settings.from_env({}))

# Partition ranges run as one run each: the only policy `dagster asset materialize
# --partition-range` accepts, and the one that turns a range into one set of Meta requests
# (bounded inside the run by META_FETCH_WINDOW_DAYS; see docs/backfills.md).
meta_spend_backfill_policy = dg.BackfillPolicy.single_run()


def partition_dates(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[dt.date, dt.date]:
    """The first and last day of the run's partition (or partition range); a reversed range is an error."""
    window = context.partition_time_window
    since, until = window.start.date(), (window.end - dt.timedelta(days=1)).date()
    if since > until:
        raise dg.Failure(
            description=f"the partition range {since}...{until} is empty: it starts after it ends; "
            f"give the earlier day first ({until}...{since})"
        )
    return since, until


def days(since: dt.date, until: dt.date) -> list[dt.date]:
    return [since + dt.timedelta(days=i) for i in range((until - since).days + 1)]
