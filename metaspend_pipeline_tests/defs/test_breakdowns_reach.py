"""Spend by age and gender, country and placement, and reach by week and month, through Dagster against
the sandbox: every table equals the sandbox's truth at every level, the checks pass on it and fail on a
wrong number, the limits are refused before any request, and the commands and frames read it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline.cli import cli
from metaspend_pipeline.defs.breakdowns.assets import meta_breakdowns
from metaspend_pipeline.defs.breakdowns.checks import meta_breakdowns_checks
from metaspend_pipeline.defs.reach.assets import meta_reach_monthly, meta_reach_weekly
from metaspend_pipeline.defs.reach.checks import meta_reach_monthly_checks, meta_reach_weekly_checks
from metaspend_pipeline.errors import InvalidInputError
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
    assert "13 months" in message and "the first day Meta serves today" in message
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


README = Path(__file__).resolve().parents[2] / "README.md"
README_SECTION = "## Who saw the ads: breakdowns and reach"


def _readme_sql() -> list[str]:
    text = README.read_text()
    assert f"\n{README_SECTION}\n" in text, f"README.md lost its section {README_SECTION!r}"
    section = text.split(f"\n{README_SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sql\n(.*?)^```$", section, re.S | re.M)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_the_readmes_sql_gives_what_the_commands_print(pipeline: Pipeline) -> None:
    """'Spend by age group last month' and 'reach by campaign by month', run as written (for demo-org-1)
    on PostgreSQL, equal `metaspend breakdown` summed by age and `metaspend reach --period month`."""
    this_month = TODAY.replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    end_of_last = this_month - dt.timedelta(days=1)
    assert pipeline.run(last_month.isoformat(), end_of_last.isoformat(), extra=[meta_breakdowns]).success
    for month in (last_month, this_month):
        if month <= YESTERDAY:
            assert _reach_run(pipeline, meta_reach_monthly, meta_reach_monthly_checks, month.isoformat()).success
    by_age, by_month = _readme_sql()
    org = "demo-org-1"
    with pipeline.engine.connect() as conn:
        ages = conn.execute(sa.text(by_age.replace("'org-123'", f"'{org}'"))).all()
        months = conn.execute(sa.text(by_month.replace("'org-123'", f"'{org}'"))).all()

    def command(*args: str) -> list[dict]:
        out = CliRunner().invoke(cli, [*args, "--org", org, "--format", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    items = command(
        "breakdown", "--by", "age_gender", "--from", last_month.isoformat(), "--to", end_of_last.isoformat()
    )
    expected: dict[tuple[str, str], list] = {}
    for i in items:
        sums = expected.setdefault((i["age"], i["currency"]), [Decimal(0), 0, 0])
        sums[0] += Decimal(str(i["spend"]))
        sums[1] += i["impressions"]
        sums[2] += i["clicks"]
    assert len(ages) >= 7  # every age group, in two currencies
    assert {(r.age, r.currency): [r.spend, r.impressions, r.clicks] for r in ages} == expected
    reach = command("reach", "--period", "month", "--from", last_month.isoformat(), "--to", this_month.isoformat())
    assert len(months) == len(reach) >= 5
    assert sorted(
        (r.month_start.isoformat(), r.period_end.isoformat(), r.campaign_id, r.campaign_name, r.reach, r.frequency)
        for r in months
    ) == sorted(
        (i["monthStart"], i["periodEnd"], i["campaignId"], i["campaignName"], i["reach"], Decimal(str(i["frequency"])))
        for i in reach
    )


def test_reach_command_and_frame_list_metas_rows_with_names(pipeline: Pipeline) -> None:
    monday = YESTERDAY - dt.timedelta(days=YESTERDAY.weekday())
    assert pipeline.run(monday.isoformat(), YESTERDAY.isoformat()).success  # the spend fetch reads the names
    assert _reach_run(pipeline, meta_reach_weekly, meta_reach_weekly_checks, monday.isoformat()).success
    org = "demo-org-1"
    t = REACH_TABLES["week"]
    with pipeline.engine.connect() as conn:
        stored = {
            (r.level, r.campaign_id, r.adset_id): r
            for r in conn.execute(sa.select(t).where(t.c.organization_id == org, t.c.week_start == monday))
        }
    assert {level for level, *_ in stored} == {"CAMPAIGN", "ADSET"}  # META_REACH_LEVELS' default
    for level, ids in (("campaign", ("campaignId",)), ("adset", ("adsetId", "campaignId"))):
        out = CliRunner().invoke(cli, ["reach", "--org", org, "--period", "week", "--level", level, "--format", "csv"])
        assert out.exit_code == 0, out.output
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        wanted = {k: r for k, r in stored.items() if k[0] == level.upper()}
        assert len(rows) == len(wanted) > 0
        for row in rows:
            r = wanted[(level.upper(), row["campaignId"], row.get("adsetId") or None)]
            assert (row["weekStart"], row["periodEnd"]) == (monday.isoformat(), YESTERDAY.isoformat())
            assert (int(row["reach"]), Decimal(row["frequency"]), int(row["impressions"])) == (
                r.reach,
                r.frequency,
                r.impressions,
            )
            assert (Decimal(row["spend"]), row["currency"]) == (r.spend, r.currency)
            assert row["campaignName"] and all(row[i] for i in ids)
    table = CliRunner().invoke(cli, ["reach", "--org", org, "--period", "week"])
    assert table.exit_code == 0 and "campaignName" in table.stdout.splitlines()[0]
    nothing = CliRunner().invoke(cli, ["reach", "--org", org, "--period", "month"])  # no month loaded
    assert nothing.exit_code == 0
    assert f"no monthly reach of organization {org} at level campaign starts in" in nothing.stderr

    from metaspend_pipeline import frames

    frame = frames.reach(org, "week", monday, YESTERDAY, level="adset", database_url=pipeline.db_url)
    assert len(frame) == len([k for k in stored if k[0] == "ADSET"])
    assert {type(v) for v in frame["frequency"]} == {Decimal} and {type(v) for v in frame["spend"]} == {Decimal}
    assert frame["adset_name"].notna().all() and frame["campaign_name"].notna().all()
    with pytest.raises(InvalidInputError, match="period must be week or month, got 'day'"):
        frames.reach(org, "day", monday, YESTERDAY, database_url=pipeline.db_url)


def test_reach_checks_fail_on_a_wrong_row_and_name_it(pipeline: Pipeline) -> None:
    first = YESTERDAY.replace(day=1)
    assert pipeline.run(first.isoformat(), YESTERDAY.isoformat()).success
    assert _reach_run(pipeline, meta_reach_monthly, meta_reach_monthly_checks, first.isoformat()).success
    t = REACH_TABLES["month"]
    with pipeline.engine.begin() as conn:
        over, off = conn.execute(
            sa.select(t.c.campaign_id, t.c.impressions)
            .where(t.c.level == "CAMPAIGN")
            .order_by(t.c.campaign_id)
            .limit(2)
        ).all()
        conn.execute(
            t.update()
            .where(t.c.campaign_id == over.campaign_id, t.c.level == "CAMPAIGN")
            .values(reach=over.impressions + 1)
        )
        conn.execute(
            t.update()
            .where(t.c.campaign_id == off.campaign_id, t.c.level == "CAMPAIGN")
            .values(spend=t.c.spend + Decimal("0.01"))
        )
    checks = dg.materialize(
        [meta_reach_monthly, meta_reach_monthly_checks],
        selection=dg.AssetSelection.checks(meta_reach_monthly_checks),
        tags={"dagster/partition": first.isoformat()},  # the checks alone: the month only in the run's tags
        resources=pipeline.resources,
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in checks.get_asset_check_evaluations()}
    assert not evaluations["reach_not_above_impressions"].passed
    assert f"campaign {over.campaign_id}" in evaluations["reach_not_above_impressions"].description
    assert not evaluations["adds_up_to_meta_spend_daily"].passed
    description = evaluations["adds_up_to_meta_spend_daily"].description
    assert f"campaign {off.campaign_id}" in description and f"month {first}..{YESTERDAY}" in description
    assert f"campaign {over.campaign_id}" not in description  # its impressions and spend are right
