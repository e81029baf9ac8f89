"""Spend by age and gender, country and placement, and reach by week and month, through Dagster against
the sandbox: every table equals the sandbox's truth at every level, the checks pass on it and fail on a
wrong number, the limits are refused before any request, and the commands and frames read it."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.defs.breakdowns.assets import meta_breakdowns
from metaspend_pipeline.defs.breakdowns.checks import meta_breakdowns_checks
from metaspend_pipeline.defs.reach.assets import meta_reach_monthly, meta_reach_weekly
from metaspend_pipeline.defs.reach.checks import meta_reach_monthly_checks, meta_reach_weekly_checks
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import BREAKDOWN_TABLES, REACH_PERIODS, REACH_TABLES
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import TODAY, day, iso

START, END = iso(1), iso(7)
YESTERDAY = TODAY - dt.timedelta(days=1)
LEVELS = ("campaign", "adset", "ad")
IDS = ("campaign_id", "adset_id", "ad_id")


def _stored_breakdown(pipeline: Pipeline, name: str) -> list[tuple]:
    t = BREAKDOWN_TABLES[name]
    columns = ["organization_id", "ad_account_id", "level", "date", *IDS, *BREAKDOWN_SETS[name]]
    with pipeline.engine.connect() as conn:
        rows = conn.execute(sa.select(*(t.c[c] for c in columns), t.c.currency, t.c.spend, t.c.impressions, t.c.clicks))
        return sorted(tuple(r) for r in rows)


def _truth_breakdown(pipeline: Pipeline, name: str, levels: tuple[str, ...], start: str, end: str) -> list[tuple]:
    world = pipeline.sandbox.world
    rows = []
    for org in world.organizations:
        for account in org.ad_accounts:
            for level in levels:
                for r in world.breakdown_truth(
                    account, level, dt.date.fromisoformat(start), dt.date.fromisoformat(end), name
                ):
                    rows.append(
                        (
                            org.organization_id,
                            account,
                            level.upper(),
                            dt.date.fromisoformat(r["date"]),
                            *(r[c] for c in IDS),
                            *(r[f] for f in BREAKDOWN_SETS[name]),
                            r["currency"],
                            Decimal(r["spend"]),
                            r["impressions"],
                            r["clicks"],
                        )
                    )
    return sorted(rows)


def test_every_breakdown_at_every_level_equals_the_sandbox_and_adds_up_to_the_daily_spend(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_BREAKDOWN_LEVELS", "campaign,adset,ad")
    before = len(pipeline.sandbox.requests_log())
    with dg.instance_for_test() as instance:
        result = pipeline.run(START, END, instance=instance, extra=[meta_breakdowns, meta_breakdowns_checks])
        assert result.success
        evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
        observation = next(
            e.asset_observation_data.asset_observation
            for e in result.all_events
            if e.is_asset_observation and e.asset_key == dg.AssetKey("meta_spend_by_country") and e.partition is None
        )
    for name in BREAKDOWN_SETS:
        assert _stored_breakdown(pipeline, name) == _truth_breakdown(pipeline, name, LEVELS, START, END), name
        check = evaluations[(BREAKDOWN_TABLES[name].name, "adds_up_to_meta_spend_daily")]
        assert check.passed, check.description
        assert evaluations[(BREAKDOWN_TABLES[name].name, "every_organization_written")].passed
    with pipeline.engine.connect() as conn:
        fetches = raw_store.fetches_of_run(conn, result.run_id, report="breakdowns")
    assert len(fetches) == 5 and {f.status for f in fetches} == {"OK"}  # one per ad account
    # every request of the breakdowns is counted, per ad account, and they are one series per level and set
    per_account = observation.metadata["requests_per_ad_account"].value
    asked = [c for c in pipeline.sandbox.requests_log()[before:] if "breakdowns" in c.get("params", {})]
    assert sum(per_account.values()) == observation.metadata["meta_requests"].value
    assert sum(per_account.values()) == sum(f.requests for f in fetches)
    assert len([c for c in asked if c["method"] != "GET" or "/insights" in c["path"]]) >= 5 * 3 * 3


def test_a_breakdown_that_disagrees_with_the_daily_spend_fails_its_check(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END, extra=[meta_breakdowns]).success
    t = BREAKDOWN_TABLES["age_gender"]
    with pipeline.engine.begin() as conn:
        victim = conn.execute(sa.select(t.c.id, t.c.campaign_id, t.c.date).limit(1)).one()
        conn.execute(t.update().where(t.c.id == victim.id).values(spend=t.c.spend + Decimal("0.01")))
    checks = pipeline.run(
        START,
        END,
        asset_selection=dg.AssetSelection.checks(meta_breakdowns_checks),
        extra=[meta_breakdowns, meta_breakdowns_checks],
    )
    [evaluation] = [
        e
        for e in checks.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(t.name) and e.check_name == "adds_up_to_meta_spend_daily"
    ]
    assert not evaluation.passed
    assert f"campaign {victim.campaign_id}" in evaluation.description
    assert str(victim.date) in evaluation.description


def test_breakdowns_left_out_are_not_fetched_nor_materialized(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_BREAKDOWNS", "country")
    before = len(pipeline.sandbox.requests_log())
    result = pipeline.run(START, START, extra=[meta_breakdowns])
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "meta_spend_by_country" in materialized
    assert not {"meta_spend_by_age_gender", "meta_spend_by_placement"} & materialized
    asked = {c["params"].get("breakdowns") for c in pipeline.sandbox.requests_log()[before:]}
    assert asked - {None} == {"country"}


def _reach_run(pipeline: Pipeline, asset: dg.AssetsDefinition, checks: dg.AssetChecksDefinition, partition: str):  # type: ignore[no-untyped-def]
    return dg.materialize([asset, checks], partition_key=partition, resources=pipeline.resources, raise_on_error=False)


@pytest.mark.parametrize("period", ["week", "month"])
def test_reach_is_metas_count_for_the_whole_period_and_its_numbers_add_up_to_the_days(
    pipeline: Pipeline, period: str
) -> None:
    """The current week (month), not over yet: counted by Meta up to yesterday, at the default levels
    (campaign, ad set), equal to the sandbox's truth for exactly that span, which is less than the sum
    of its days; its impressions and spend add up to meta_spend_daily over the same days."""
    first = YESTERDAY - dt.timedelta(days=YESTERDAY.weekday()) if period == "week" else YESTERDAY.replace(day=1)
    assert pipeline.run(first.isoformat(), YESTERDAY.isoformat()).success  # the daily spend of the period
    asset, checks = (
        (meta_reach_weekly, meta_reach_weekly_checks)
        if period == "week"
        else (meta_reach_monthly, meta_reach_monthly_checks)
    )
    result = _reach_run(pipeline, asset, checks, first.isoformat())
    assert result.success
    for evaluation in result.get_asset_check_evaluations():
        assert evaluation.passed, (evaluation.check_name, evaluation.description)
    t = REACH_TABLES[period]
    with pipeline.engine.connect() as conn:
        stored = sorted(
            (
                r.ad_account_id,
                r.level,
                r.campaign_id,
                r.adset_id,
                r.ad_id,
                r.period_end,
                r.reach,
                r.frequency,
                r.impressions,
                r.spend,
            )
            for r in conn.execute(sa.select(t).where(t.c[REACH_PERIODS[period]] == first))
        )
    world = pipeline.sandbox.world
    truth = sorted(
        (
            account,
            level.upper(),
            r["campaign_id"],
            r["adset_id"],
            r["ad_id"],
            YESTERDAY,
            r["reach"],
            Decimal(r["frequency"]),
            r["impressions"],
            Decimal(r["spend"]),
        )
        for org in world.organizations
        for account in org.ad_accounts
        for level in ("campaign", "adset")
        for r in world.reach_truth(account, level, first, YESTERDAY)
    )
    assert stored == truth
    if (YESTERDAY - first).days >= 1:  # a count over several days is below the sum of the daily counts
        daily = sum(
            r["reach"]
            for d in range((YESTERDAY - first).days + 1)
            for r in world.reach_truth(
                "act_1000000001", "campaign", first + dt.timedelta(days=d), first + dt.timedelta(days=d)
            )
        )
        whole = sum(r[6] for r in stored if r[0] == "act_1000000001" and r[1] == "CAMPAIGN")
        assert 0 < whole < daily


def test_reach_older_than_13_months_is_refused_before_any_request(pipeline: Pipeline) -> None:
    old = (TODAY.replace(day=1) - dt.timedelta(days=31 * 14)).replace(day=1)
    before = len(pipeline.sandbox.requests_log())
    result = _reach_run(pipeline, meta_reach_monthly, meta_reach_monthly_checks, old.isoformat())
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "13 months" in message and "the first day Meta serves is" in message
    assert len(pipeline.sandbox.requests_log()) == before


def test_the_commands_and_frames_read_the_tables_with_names(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END, extra=[meta_breakdowns]).success
    org = "demo-org-1"
    out = CliRunner().invoke(
        cli, ["breakdown", "--org", org, "--by", "age_gender", "--from", START, "--to", END, "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    items = json.loads(out.stdout)
    truth: dict[tuple, list] = {}
    for account in ("act_1000000001", "act_1000000002"):
        for r in pipeline.sandbox.world.breakdown_truth(account, "campaign", day(1), day(7), "age_gender"):
            sums = truth.setdefault((r["campaign_id"], r["age"], r["gender"]), [Decimal(0), 0, 0])
            sums[0] += Decimal(r["spend"])
            sums[1] += r["impressions"]
            sums[2] += r["clicks"]
    assert {
        (i["campaignId"], i["age"], i["gender"]): [Decimal(str(i["spend"])), i["impressions"], i["clicks"]]
        for i in items
    } == truth
    assert all(i["campaignName"] for i in items)  # the names, joined
    assert [i["spend"] for i in items] == sorted((i["spend"] for i in items), reverse=True)

    from metaspend_pipeline import frames

    frame = frames.breakdown(org, "country", START, END, database_url=pipeline.db_url)
    assert len(frame) == sum(
        len(pipeline.sandbox.world.breakdown_truth(a, "campaign", day(1), day(7), "country"))
        for a in ("act_1000000001", "act_1000000002")
    )
    assert {type(v) for v in frame["spend"]} == {Decimal}  # money stays exact
    assert frame["campaign_name"].notna().all()
    roas = frames.roas(org, START, END, database_url=pipeline.db_url)
    assert {type(v) for v in roas["spend"]} == {Decimal} and roas["campaign_name"].notna().all()
