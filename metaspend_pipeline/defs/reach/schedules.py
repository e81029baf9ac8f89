"""The reach schedules: each tick refreshes the current week (month), and the previous one while it is
within the restatement look-back (META_SPEND_LOOKBACK_DAYS), as the daily spend schedule re-fetches the
days Meta may still restate."""

import datetime as dt

import dagster as dg

from metaspend_pipeline.defs.reach.assets import periods
from metaspend_pipeline.defs.reach.jobs import meta_reach_monthly_job, meta_reach_weekly_job
from metaspend_pipeline.settings import Settings


def reach_partitions_to_refresh(period: str, scheduled: dt.datetime, settings: Settings) -> list[dt.date]:
    """The first days of the periods a tick at `scheduled` refreshes: the one holding yesterday (UTC),
    and the one before while its last day is within the look-back of yesterday."""
    moment = scheduled if scheduled.tzinfo else scheduled.replace(tzinfo=dt.UTC)
    yesterday = moment.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    if yesterday < settings.spend_start_date:
        return []
    earliest = max(settings.spend_start_date, yesterday - dt.timedelta(days=settings.spend_lookback_days))
    return [first for first, _ in periods(period, earliest, yesterday)]


def build_reach_schedule(period: str, settings: Settings) -> dg.ScheduleDefinition:
    job = meta_reach_weekly_job if period == "week" else meta_reach_monthly_job
    name = f"{job.name.removesuffix('_job')}_schedule"

    @dg.schedule(
        name=name,
        cron_schedule=settings.spend_cron,
        job=job,
        execution_timezone=settings.schedule_timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.spend_enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Reach of the current {period}, and of the previous one within META_SPEND_LOOKBACK_DAYS. "
        "Runs with META_SPEND_CRON, by default only when META_SPEND_ENABLED=true.",
    )
    def reach_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        firsts = reach_partitions_to_refresh(period, context.scheduled_execution_time, settings)
        requests = [
            dg.RunRequest(
                run_key=f"{name}:{first}:{context.scheduled_execution_time:%Y-%m-%d}",
                partition_key=first.isoformat(),
                tags={"metaspend/purpose": "reach"},
            )
            for first in firsts
        ]
        return requests or dg.SkipReason("yesterday is before META_SPEND_START_DATE")

    return reach_schedule


@dg.definitions
def schedules() -> dg.Definitions:
    """Built when Dagster loads the code location, from the environment of that moment."""
    settings = Settings.from_env()
    return dg.Definitions(schedules=[build_reach_schedule(period, settings) for period in ("week", "month")])
