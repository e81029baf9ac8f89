"""What the Dagster UI shows of a run, read back from the instance: one materialization per
partition with that day's own numbers, run-level numbers kept off the days."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa

from metaspend_pipeline.meta import versions
from metaspend_pipeline.storage.schema import meta_roas_by_campaign, meta_spend_daily
from metaspend_pipeline_tests import dates
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import iso

DAYS = [iso(1), iso(2), iso(3)]
RUN_LEVEL = {
    "meta_requests",
    "meta_retries",
    "accounts_fetched",
    "accounts_failed",
    "report_runs",
    "organizations",
    "throttle_wait_seconds",
    "totals",
    "partition_range",
    "rows_in_run",
    "rows_written",
}
KEYS = ["meta_raw_insights", "meta_spend_daily", "meta_roas_by_campaign", "meta_roas_by_adset", "meta_roas_by_ad"]


def _events(instance: dg.DagsterInstance, key: str) -> dict[str, dict]:
    records = instance.fetch_materializations(dg.AssetKey(key), limit=100).records
    by_day: dict[str, dict] = {}
    for record in records:
        m = record.asset_materialization
        assert m.partition not in by_day, f"{key} {m.partition} materialized twice in one run"
        by_day[m.partition] = {k: v.value for k, v in m.metadata.items()}
    return by_day


def test_a_range_run_records_one_event_per_day_with_its_own_numbers(pipeline: Pipeline) -> None:
    campaign = pipeline.sandbox.world.accounts["act_1000000001"].campaigns[0].id
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lead (id, organization_id, created_at, campaign_id) VALUES ('l1', 'demo-org-1', :at, :c)"
            ),
            {"at": dt.datetime.combine(dates.day(2), dt.time(15), dt.UTC), "c": campaign},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sale (id, organization_id, lead_id, amount, currency) "
                "VALUES ('s1', 'demo-org-1', 'l1', '123.45', 'USD')"
            )
        )
    with dg.instance_for_test() as instance:
        result = pipeline.run(DAYS[0], DAYS[-1], instance=instance)
        assert result.success
        events = {key: _events(instance, key) for key in KEYS}
        observations = instance.fetch_observations(dg.AssetKey("meta_raw_insights"), limit=10).records

    for key in KEYS:
        assert sorted(events[key]) == DAYS, key
        for day, metadata in events[key].items():
            assert not RUN_LEVEL & set(metadata), (key, day, RUN_LEVEL & set(metadata))

    s = meta_spend_daily
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spend: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with pipeline.engine.connect() as conn:
        for day, level, currency, amount in conn.execute(sa.select(s.c.date, s.c.level, s.c.currency, s.c.spend)):
            rows[day.isoformat()][level] += 1
            if level == "CAMPAIGN":
                spend[day.isoformat()][currency] += amount
        roas_rows = list(
            conn.execute(
                sa.select(
                    meta_roas_by_campaign.c.date,
                    meta_roas_by_campaign.c.currency,
                    meta_roas_by_campaign.c.spend,
                    meta_roas_by_campaign.c.revenue,
                )
            )
        )
    assert len(set(spend[DAYS[0]])) >= 2, "the sandbox's accounts should spend in several currencies"
    for day in DAYS:
        metadata = events["meta_spend_daily"][day]
        assert {k: v for k, v in metadata.items() if k.startswith("rows_")} == {
            f"rows_{level.lower()}": n for level, n in rows[day].items()
        }
        assert metadata["dagster/row_count"] == sum(rows[day].values())
        assert {k: Decimal(str(v)) for k, v in metadata.items() if k.startswith("spend_")} == {
            f"spend_{currency}": amount for currency, amount in spend[day].items()
        }
        assert events["meta_raw_insights"][day]["rows_ad"] == rows[day]["AD"]

    roas_spend: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    roas_revenue: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    roas_count: dict[str, int] = defaultdict(int)
    for day, currency, amount, revenue in roas_rows:
        roas_spend[day.isoformat()][currency] += amount
        roas_revenue[day.isoformat()][currency] += revenue or 0
        roas_count[day.isoformat()] += 1
    for day in DAYS:
        metadata = events["meta_roas_by_campaign"][day]
        assert metadata["dagster/row_count"] == roas_count[day]
        for currency, amount in roas_spend[day].items():
            assert Decimal(str(metadata[f"spend_{currency}"])) == amount
            assert Decimal(str(metadata[f"revenue_{currency}"])) == roas_revenue[day][currency]
            if amount:
                assert metadata[f"roas_{currency}"] == float(roas_revenue[day][currency] / amount)
    assert [events["meta_roas_by_campaign"][d]["revenue_USD"] for d in DAYS] == [0, 123.45, 0]

    assert len(observations) == 1
    observation = observations[0].asset_observation
    assert observation.partition is None
    assert observation.metadata["accounts_fetched"].value == 5
    assert observation.metadata["meta_requests"].value > 0
    # the default version, which Meta (the sandbox) serves without a warning
    assert observation.metadata["meta_api_version"].value == versions.DEFAULT_VERSION
    assert "meta_api_version_warning" not in observation.metadata
    [version_check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "meta_api_version_current"]
    assert version_check.passed == (versions.version_status(versions.DEFAULT_VERSION, dates.TODAY).level == "ok")
    assert version_check.metadata["meta_api_version"].value == versions.DEFAULT_VERSION


def test_the_run_emits_the_column_schema_of_the_database_in_use(pipeline: Pipeline) -> None:
    with dg.instance_for_test() as instance:
        assert pipeline.run(DAYS[0], instance=instance).success
        record = instance.fetch_materializations(dg.AssetKey("meta_spend_daily"), limit=1).records[0]
    schema = record.asset_materialization.metadata["dagster/column_schema"].value
    columns = {c.name: c for c in schema.columns}
    expected = meta_spend_daily.c.spend.type.compile(dialect=pipeline.engine.dialect)
    assert columns["spend"].type == expected
    assert columns["spend"].description == meta_spend_daily.c.spend.comment
    assert all(c.description for c in schema.columns)


def test_lead_and_sale_are_observed_with_their_latest_rows(pipeline: Pipeline) -> None:
    from metaspend_pipeline.definitions import load

    with pipeline.engine.begin() as conn:
        for i, hour in enumerate((9, 17)):
            conn.execute(
                sa.text("INSERT INTO lead (id, organization_id, created_at) VALUES (:id, 'demo-org-1', :at)"),
                {"id": f"l{i}", "at": dt.datetime(2026, 10, 2, hour, tzinfo=dt.UTC)},
            )
        conn.execute(
            sa.text(
                "INSERT INTO sale (id, organization_id, lead_id, amount, currency, closed_at) "
                "VALUES ('s1', 'demo-org-1', 'l0', '5.00', 'USD', :at)"
            ),
            {"at": dt.datetime(2026, 10, 4, 8, 30, tzinfo=dt.UTC)},
        )
    job = load().resolve_job_def("product_tables_observe_job")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(
            instance=instance, resources={"warehouse": pipeline.resources["warehouse"]}
        ).success
        lead = instance.fetch_observations(dg.AssetKey("lead"), limit=1).records[0].asset_observation
        sale = instance.fetch_observations(dg.AssetKey("sale"), limit=1).records[0].asset_observation
    assert lead.metadata["dagster/row_count"].value == 2
    assert lead.metadata["latest_created_at"].value == dt.datetime(2026, 10, 2, 17, tzinfo=dt.UTC).timestamp()
    assert lead.data_version == "2:2026-10-02T17:00:00+00:00"
    assert sale.metadata["dagster/row_count"].value == 1
    assert sale.metadata["latest_closed_at"].value == dt.datetime(2026, 10, 4, 8, 30, tzinfo=dt.UTC).timestamp()
