"""Schedule ticks ask for the right partitions, and obey their enable flags and crons."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.meta_spend.schedules import build_spend_schedule
from metaspend_pipeline.defs.roas.assets import ROAS_KEYS
from metaspend_pipeline.defs.tokens.schedules import build_token_refresh_schedule
from metaspend_pipeline.settings import Settings

RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def tick(schedule: dg.ScheduleDefinition, when: dt.datetime) -> list[dg.RunRequest]:
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when))
    return list(data.run_requests or [])


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str, object]]:
    return [
        (r.tags[RANGE[0]], r.tags[RANGE[1]], None if r.asset_selection is None else sorted(map(str, r.asset_selection)))
        for r in requests
    ]


def test_a_tick_fetches_yesterday_and_the_lookback_and_recomputes_roas() -> None:
    requests = tick(load().resolve_schedule_def("meta_spend_schedule"), dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC))
    assert ranges(requests) == [
        ("2026-11-21", "2026-11-24", None),  # yesterday and the 3 days before it, every asset
        ("2026-10-28", "2026-11-20", sorted(map(str, ROAS_KEYS.values()))),  # ROAS alone: 28 days in all
    ]
    assert requests[0].run_key != requests[1].run_key


def test_lookbacks_come_from_the_environment() -> None:
    settings = Settings.from_env({"META_SPEND_LOOKBACK_DAYS": "0", "METASPEND_ROAS_LOOKBACK_DAYS": "7"})
    requests = tick(build_spend_schedule(settings), dt.datetime(2026, 3, 10, 6, tzinfo=dt.UTC))
    assert ranges(requests) == [
        ("2026-03-09", "2026-03-09", None),
        ("2026-03-03", "2026-03-08", sorted(map(str, ROAS_KEYS.values()))),
    ]


def test_ranges_never_start_before_the_first_partition() -> None:
    settings = Settings.from_env({"META_SPEND_START_DATE": "2026-03-08"})
    requests = tick(build_spend_schedule(settings), dt.datetime(2026, 3, 10, 6, tzinfo=dt.UTC))
    assert ranges(requests) == [("2026-03-08", "2026-03-09", None)]
    before = tick(build_spend_schedule(settings), dt.datetime(2026, 3, 8, 6, tzinfo=dt.UTC))
    assert before == []


def test_a_tick_in_another_time_zone_still_asks_for_utc_partitions() -> None:
    settings = Settings.from_env({"METASPEND_SCHEDULE_TIMEZONE": "America/Los_Angeles"})
    schedule = build_spend_schedule(settings)
    assert schedule.execution_timezone == "America/Los_Angeles"
    # 22:00 in Los Angeles on the 24th is 06:00 UTC on the 25th: yesterday is the 24th
    local = dt.datetime(2026, 11, 24, 22, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    assert ranges(tick(schedule, local))[0][1] == "2026-11-24"


@pytest.mark.parametrize(
    ("env", "spend", "refresh"),
    [
        ({}, dg.DefaultScheduleStatus.STOPPED, dg.DefaultScheduleStatus.STOPPED),
        ({"META_SPEND_ENABLED": "true"}, dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED),
        ({"META_TOKEN_REFRESH_ENABLED": "true"}, dg.DefaultScheduleStatus.STOPPED, dg.DefaultScheduleStatus.RUNNING),
        (
            {"META_SPEND_ENABLED": "false", "META_TOKEN_REFRESH_ENABLED": "1"},
            dg.DefaultScheduleStatus.STOPPED,
            dg.DefaultScheduleStatus.RUNNING,
        ),
    ],
)
def test_schedules_run_only_when_enabled(env: dict[str, str], spend: object, refresh: object) -> None:
    settings = Settings.from_env(env)
    assert build_spend_schedule(settings).default_status == spend
    assert build_token_refresh_schedule(settings).default_status == refresh


def test_crons_come_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert build_spend_schedule(defaults).cron_schedule == "0 6 * * *"
    assert build_token_refresh_schedule(defaults).cron_schedule == "0 5 * * *"
    custom = Settings.from_env({"META_SPEND_CRON": "30 7 * * *", "META_TOKEN_REFRESH_CRON": "15 4 * * 1"})
    assert build_spend_schedule(custom).cron_schedule == "30 7 * * *"
    assert build_token_refresh_schedule(custom).cron_schedule == "15 4 * * 1"


def test_token_refresh_tick_requests_one_run() -> None:
    [request] = tick(
        load().resolve_schedule_def("meta_token_refresh_schedule"), dt.datetime(2026, 11, 25, 5, tzinfo=dt.UTC)
    )
    assert request.run_key == "meta_token_refresh:2026-11-25T05:00"


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="META_SPEND_LOOKBACK_DAYS must be a whole number, got 'three'"):
        Settings.from_env({"META_SPEND_LOOKBACK_DAYS": "three"})
    with pytest.raises(ValueError, match="META_SPEND_START_DATE must be a date"):
        Settings.from_env({"META_SPEND_START_DATE": "01/01/2024"})
    with pytest.raises(ValueError, match="META_SPEND_ENABLED must be true or false"):
        Settings.from_env({"META_SPEND_ENABLED": "maybe"})


def _reach_keys(period: str, when: dt.datetime, env: dict[str, str] | None = None) -> list[str]:
    from metaspend_pipeline.defs.reach.schedules import reach_partitions_to_refresh

    return [d.isoformat() for d in reach_partitions_to_refresh(period, when, Settings.from_env(env or {}))]


def test_reach_ticks_refresh_the_current_period_and_the_previous_one_within_the_lookback() -> None:
    # Friday 2026-11-27: yesterday is Thursday, and the look-back (3 days before it) stays in its week
    assert _reach_keys("week", dt.datetime(2026, 11, 27, 6, tzinfo=dt.UTC)) == ["2026-11-23"]
    # Thursday: the look-back reaches Sunday 22nd, the last day of the week before
    assert _reach_keys("week", dt.datetime(2026, 11, 26, 6, tzinfo=dt.UTC)) == ["2026-11-16", "2026-11-23"]
    assert _reach_keys("month", dt.datetime(2026, 12, 2, 6, tzinfo=dt.UTC)) == ["2026-11-01", "2026-12-01"]
    assert _reach_keys("month", dt.datetime(2026, 12, 20, 6, tzinfo=dt.UTC)) == ["2026-12-01"]
    # every key is a partition of the job's (a week starts on a Monday)
    defs = load()
    for period, keys in (("week", ["2026-11-16", "2026-11-23"]), ("month", ["2026-11-01", "2026-12-01"])):
        partitions = defs.resolve_job_def(f"meta_reach_{period}ly_job").partitions_def
        assert partitions is not None
        assert set(keys) <= set(partitions.get_partition_keys(dt.datetime(2026, 12, 2, tzinfo=dt.UTC)))


def test_reach_ticks_never_ask_before_the_first_partition() -> None:
    env = {"META_SPEND_START_DATE": "2026-11-25"}
    assert _reach_keys("week", dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC), env) == []
    assert _reach_keys("week", dt.datetime(2026, 11, 27, 6, tzinfo=dt.UTC), env) == ["2026-11-23"]
