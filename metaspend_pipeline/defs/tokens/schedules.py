"""The token refresh schedule."""

import dagster as dg

from metaspend_pipeline.defs.tokens.jobs import meta_token_refresh_job
from metaspend_pipeline.settings import Settings


def build_token_refresh_schedule(settings: Settings) -> dg.ScheduleDefinition:
    """`meta_token_refresh_schedule` on META_TOKEN_REFRESH_CRON; running by default only when
    META_TOKEN_REFRESH_ENABLED=true."""

    @dg.schedule(
        name="meta_token_refresh_schedule",
        cron_schedule=settings.token_refresh_cron,
        job=meta_token_refresh_job,
        execution_timezone=settings.schedule_timezone,
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if settings.token_refresh_enabled else dg.DefaultScheduleStatus.STOPPED
        ),
        description="Extends tokens expiring within 7 days. Runs by default only when META_TOKEN_REFRESH_ENABLED=true.",
    )
    def meta_token_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(run_key=f"meta_token_refresh:{context.scheduled_execution_time:%Y-%m-%dT%H:%M}")

    return meta_token_refresh_schedule


@dg.definitions
def schedules() -> dg.Definitions:
    """Built when Dagster loads the code location, from the environment of that moment."""
    return dg.Definitions(schedules=[build_token_refresh_schedule(Settings.from_env())])
