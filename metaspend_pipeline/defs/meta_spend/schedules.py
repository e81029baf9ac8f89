"""The daily spend schedule: yesterday, the days Meta may restate, and ROAS over its look-back window."""

import datetime as dt

import dagster as dg

from metaspend_pipeline.defs.meta_spend.jobs import meta_spend_job
from metaspend_pipeline.defs.roas.assets import ROAS_KEYS
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.shards import SHARD_TAG, all_shards

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {RANGE_START: start.isoformat(), RANGE_END: end.isoformat()}


def spend_run_requests(scheduled: dt.datetime, settings: Settings) -> list[dg.RunRequest]:
    """What one tick asks for.

    1. Raw insights, daily spend and ROAS for yesterday and the META_SPEND_LOOKBACK_DAYS days
       before it, which Meta may still restate.
    2. ROAS alone for the rest of the trailing METASPEND_ROAS_LOOKBACK_DAYS days (ending
       yesterday), because sales close days or weeks after their leads; that spend is already
       final, so Meta is not asked again.

    With META_SPEND_SHARDS=N above 1, each of them becomes N runs tagged `metaspend/shard=i/N`, each
    owning the organizations whose sha256 falls in its shard, so the run launcher can spread them
    over N workers.
    """
    moment = scheduled if scheduled.tzinfo else scheduled.replace(tzinfo=dt.UTC)
    yesterday = moment.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    first = settings.spend_start_date
    if yesterday < first:
        return []
    fetch_start = max(first, yesterday - dt.timedelta(days=settings.spend_lookback_days))
    requests = [
        dg.RunRequest(
            run_key=f"meta_spend:{fetch_start}..{yesterday}",
            tags={**_range_tags(fetch_start, yesterday), "metaspend/purpose": "daily"},
        )
    ]
    roas_start = max(first, yesterday - dt.timedelta(days=settings.roas_lookback_days - 1))
    roas_end = fetch_start - dt.timedelta(days=1)
    if roas_start <= roas_end:
        requests.append(
            dg.RunRequest(
                run_key=f"meta_roas:{roas_start}..{roas_end}",
                asset_selection=list(ROAS_KEYS.values()),
                tags={**_range_tags(roas_start, roas_end), "metaspend/purpose": "roas-lookback"},
            )
        )
    if settings.spend_shards > 1:
        requests = [
            r.with_replaced_attrs(run_key=f"{r.run_key}:shard={shard}", tags={**r.tags, SHARD_TAG: str(shard)})
            for r in requests
            for shard in all_shards(settings.spend_shards)
        ]
    return requests


def build_spend_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """`meta_spend_schedule` on META_SPEND_CRON; running by default only when META_SPEND_ENABLED=true."""

    @dg.schedule(
        name="meta_spend_schedule",
        cron_schedule=settings.spend_cron,
        job=meta_spend_job,
        execution_timezone=settings.schedule_timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.spend_enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description="Yesterday plus the days Meta may restate (META_SPEND_LOOKBACK_DAYS), and ROAS over "
        "METASPEND_ROAS_LOOKBACK_DAYS days. Runs by default only when META_SPEND_ENABLED=true.",
    )
    def meta_spend_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        requests = spend_run_requests(context.scheduled_execution_time, settings)
        return requests or dg.SkipReason("yesterday is before META_SPEND_START_DATE")

    return meta_spend_schedule


@dg.definitions
def schedules() -> dg.Definitions:
    """Built when Dagster loads the code location, from the environment of that moment."""
    return dg.Definitions(schedules=[build_spend_schedule(Settings.from_env())])
