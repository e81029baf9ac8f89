"""Every check passes on good data and fails on data made wrong on purpose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.definitions import load
from metaspend_pipeline.storage.schema import meta_ad_account, meta_spend_daily, sale
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day, iso

START, END = iso(1), iso(3)
CHECK_RANGE = {"config": {"since": START, "until": END}}


def run_checks(pipeline: Pipeline) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    result = (
        load()
        .resolve_job_def("meta_spend_checks_job")
        .execute_in_process(
            resources={"warehouse": pipeline.resources["warehouse"]},
            run_config={
                "ops": {
                    "meta_spend_daily_checks": CHECK_RANGE,
                    "meta_spend_anomaly_checks": CHECK_RANGE,
                    "meta_roas_checks": CHECK_RANGE,
                    "fx_rates_daily_every_needed_currency_has_a_rate": CHECK_RANGE,
                }
            },
        )
    )
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def first_ad_row(conn: sa.Connection) -> sa.Row:
    t = meta_spend_daily
    return conn.execute(
        sa.select(t)
        .where(t.c.level == "AD")
        .where(t.c.ad_account_id == "act_1000000001")
        .order_by(t.c.date, t.c.id)
        .limit(1)
    ).one()


def add_two_cents(conn: sa.Connection) -> None:
    """The smallest storable change beyond the check's one-cent tolerance."""
    row = first_ad_row(conn)
    conn.execute(
        meta_spend_daily.update().where(meta_spend_daily.c.id == row.id).values(spend=row.spend + Decimal("0.02"))
    )


def drop_an_ad_id(conn: sa.Connection) -> None:
    conn.execute(meta_spend_daily.update().where(meta_spend_daily.c.id == first_ad_row(conn).id).values(ad_id=None))


def change_a_currency(conn: sa.Connection) -> None:
    conn.execute(meta_spend_daily.update().where(meta_spend_daily.c.id == first_ad_row(conn).id).values(currency="EUR"))


def relabel_the_account(conn: sa.Connection) -> None:
    conn.execute(
        meta_ad_account.update().where(meta_ad_account.c.ad_account_id == "act_1000000001").values(currency="GBP")
    )


CORRUPTIONS: dict[str, tuple[Callable[[sa.Connection], None], str, str]] = {
    "spend changed on one ad": (add_two_cents, "levels_reconcile", f"act_1000000001, {iso(1)}"),
    "ad row without its ad id": (drop_an_ad_id, "keys_match_level", "AD row with"),
    "a row in another currency": (change_a_currency, "one_currency_per_ad_account", "rows in EUR, USD"),
    "Meta's currency differs": (relabel_the_account, "one_currency_per_ad_account", "as GBP"),
}


def test_checks_pass_on_good_data(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END).success
    evaluations = run_checks(pipeline)
    roas = [f"meta_roas_by_{g}" for g in ("campaign", "adset", "ad")]
    assert set(evaluations) == {
        ("meta_raw_insights", "every_organization_fetched"),
        ("fx_rates_daily", "every_needed_currency_has_a_rate"),
        ("fx_rates_daily", "every_needed_currency_has_a_rate"),
        ("meta_spend_daily", "every_organization_written"),
        ("meta_spend_daily", "levels_reconcile"),
        ("meta_spend_daily", "keys_match_level"),
        ("meta_spend_daily", "one_currency_per_ad_account"),
        ("meta_spend_daily", "no_stopped_spending"),
        ("meta_spend_daily", "spend_near_trailing_median"),
        ("meta_spend_daily", "every_ad_account_loaded"),
        *[(a, "every_organization_written") for a in roas],
        *[(a, "no_currency_mismatch") for a in roas],
        ("meta_roas_by_campaign", "attribution_gap"),
        # the checks job checks the breakdowns too: here none were fetched, so there is nothing to compare
        *[
            (f"meta_spend_by_{b}", check)
            for b in ("age_gender", "country", "placement")
            for check in ("adds_up_to_meta_spend_daily", "every_organization_written")
        ],
        ("meta_roas_by_campaign", "meta_purchases_reconcile_across_levels"),
    }
    assert all(e.passed for e in evaluations.values()), [e.description for e in evaluations.values() if not e.passed]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_checks_fail_on_wrong_data(pipeline: Pipeline, corruption: str) -> None:
    corrupt, check, message = CORRUPTIONS[corruption]
    assert pipeline.run(START, END).success
    with pipeline.engine.begin() as conn:
        corrupt(conn)
    evaluations = run_checks(pipeline)
    failed = {name for (_, name), e in evaluations.items() if not e.passed}
    assert check in failed
    evaluation = evaluations[("meta_spend_daily", check)]
    assert message in (evaluation.description or "")
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR


@pytest.mark.parametrize(("cents", "passes"), [("0.01", True), ("0.02", False)])
def test_levels_reconcile_tolerates_exactly_one_cent(pipeline: Pipeline, cents: str, passes: bool) -> None:
    """One ad moved by a cent: its ad sum is a cent off the other levels' and the check passes; two fail."""
    assert pipeline.run(START, END).success
    with pipeline.engine.begin() as conn:
        row = first_ad_row(conn)
        conn.execute(
            meta_spend_daily.update().where(meta_spend_daily.c.id == row.id).values(spend=row.spend + Decimal(cents))
        )
    evaluation = run_checks(pipeline)[("meta_spend_daily", "levels_reconcile")]
    assert evaluation.passed is passes
    if not passes:
        assert f"organization demo-org-1, ad account act_1000000001, {row.date}: levels disagree" in (
            evaluation.description or ""
        )


def test_roas_currency_mismatch_is_reported(pipeline: Pipeline) -> None:
    campaign = pipeline.sandbox.world.accounts["act_1000000001"].campaigns[0]
    adset = next(a for a in pipeline.sandbox.world.accounts["act_1000000001"].adsets if a.campaign == campaign)
    ad = next(a for a in pipeline.sandbox.world.accounts["act_1000000001"].ads if a.adset == adset)
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lead (id, organization_id, created_at, campaign_id, adset_id, ad_id) "
                "VALUES ('l1', 'demo-org-1', :at, :c, :s, :a)"
            ),
            {"at": dt.datetime.combine(day(2), dt.time(18), dt.UTC), "c": campaign.id, "s": adset.id, "a": ad.id},
        )
        conn.execute(
            sale.insert().values(id="s1", organization_id="demo-org-1", lead_id="l1", amount="10.00", currency="EUR")
        )
    result = pipeline.run(START, END)
    assert result.success  # a data problem is reported by the checks, it does not fail the run
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    for group, object_id in (("campaign", campaign.id), ("adset", adset.id), ("ad", ad.id)):
        evaluation = evaluations[(f"meta_roas_by_{group}", "no_currency_mismatch")]
        assert not evaluation.passed
        assert f"organization demo-org-1, {iso(2)}: {group} {object_id}" in evaluation.description


def test_yesterday_loaded_is_not_fooled_by_a_backfill_of_older_days(pipeline: Pipeline) -> None:
    """The freshness policy sees any partition's materialization; this check looks at yesterday's."""
    today = dt.datetime.now(dt.UTC).date()
    yesterday, older = today - dt.timedelta(days=1), today - dt.timedelta(days=3)
    job = load().resolve_job_def("meta_spend_job")

    def yesterday_loaded(partition: dt.date, instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
        result = job.execute_in_process(
            partition_key=partition.isoformat(), resources=pipeline.resources, instance=instance
        )
        assert result.success
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "yesterday_loaded"]
        return evaluation

    with dg.instance_for_test() as instance:
        before = yesterday_loaded(older, instance)
        assert not before.passed
        assert before.metadata["partition"].value == yesterday.isoformat()
        assert before.metadata["rows"].value == 0
        after = yesterday_loaded(yesterday, instance)
    with pipeline.engine.connect() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).where(meta_spend_daily.c.date == yesterday))
    assert after.passed
    assert after.metadata["rows"].value == rows > 0
