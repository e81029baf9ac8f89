"""The Dagster side of Meta's versions and lookback: the check `meta_api_version_current` (its verdict
from the table and Meta's words, and the run that yields it), and the assets and checks refusing a
range older than Meta serves before any request."""

from __future__ import annotations

import datetime as dt
import logging

import dagster as dg
import pytest

from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.meta_spend.checks import api_version_result
from metaspend_pipeline.meta import lookback, versions
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import TODAY, iso

D = dt.date
META_WORDS = "Marketing API v24.0 has been deprecated. This call was automatically upgraded to v25.0"

# --- the verdict --------------------------------------------------------------------------------------


def test_a_current_version_without_a_warning_passes() -> None:
    result = api_version_result("v25.0", [], D(2026, 12, 6))
    assert result.passed
    assert result.description == "Marketing API v25.0 (META_API_VERSION): v25.0 expires on 2027-02-23 (Meta's " \
        "published date), in 79 day(s)"  # fmt: skip
    assert {k: v.value for k, v in result.metadata.items()} == {
        "meta_api_version": "v25.0",
        "expires": "2027-02-23",
        "days_left": 79,
        "version_table": versions.SOURCE,
    }


def test_a_version_near_its_expiry_warns_and_one_past_it_is_an_error() -> None:
    near = api_version_result("v25.0", [], D(2027, 1, 1))
    assert (near.passed, near.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert "in 53 day(s)" in near.description and 'README, "Meta API version"' in near.description
    past = api_version_result("v24.0", [], D(2026, 12, 6))
    assert (past.passed, past.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert past.description.startswith("Marketing API v24.0 (META_API_VERSION): v24.0 expired on 2026-11-10")
    assert past.metadata["days_left"].value == -26


def test_meta_s_warning_alone_warns_and_is_quoted() -> None:
    """A version the table still calls current, which Meta answered with X-Ad-Api-Version-Warning."""
    result = api_version_result("v27.0", [META_WORDS], D(2026, 12, 6))
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert f'Meta answered this run\'s calls with X-Ad-Api-Version-Warning: "{META_WORDS}"' in result.description
    assert result.metadata["meta_api_version_warning"].value == META_WORDS
    assert result.metadata["expires"].value == "2027-11-04 (estimated)"


# --- the run -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no SQL of its own: one warehouse is enough
def test_an_expired_version_shows_meta_s_warning_in_the_check_the_metadata_and_the_log(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One small run (one organization, one day, the fetch alone) against a sandbox that treats v24.0
    as Meta does now: answered at v25.0 with the header."""
    monkeypatch.setenv("META_API_VERSION", "v24.0")
    pipeline.sandbox.configure(expired_versions=["v22.0", "v23.0", "v24.0"], oldest_version="v22.0")
    with dg.instance_for_test() as instance, caplog.at_level(logging.WARNING):
        result = pipeline.run(
            iso(1),
            instance=instance,
            asset_selection=[dg.AssetKey("meta_raw_insights")],
            run_config={"ops": {"meta_raw_insights": {"config": {"organizations": ["demo-org-2"]}}}},
        )
        assert result.success
        [observation] = instance.fetch_observations(dg.AssetKey("meta_raw_insights"), limit=10).records
        logged = [
            e.message
            for e in instance.all_logs(result.run_id)
            if e.level == logging.WARNING and "Meta warns" in e.message
        ]
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "meta_api_version_current"]
    expired = versions.version_status("v24.0", TODAY).level == "error"  # from 2026-11-10 on
    assert not evaluation.passed
    assert evaluation.severity == (dg.AssetCheckSeverity.ERROR if expired else dg.AssetCheckSeverity.WARN)
    assert META_WORDS in evaluation.description
    assert META_WORDS in evaluation.metadata["meta_api_version_warning"].value
    metadata = observation.asset_observation.metadata
    assert metadata["meta_api_version"].value == "v24.0"
    assert META_WORDS in metadata["meta_api_version_warning"].value
    assert len(logged) == 1 and "Meta warns about Marketing API v24.0 (META_API_VERSION)" in logged[0]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # refused before any SQL
def test_a_range_older_than_meta_serves_is_refused_by_the_assets_and_the_checks(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions may start earlier than Meta serves (META_SPEND_START_DATE); such a range fails before
    any request, naming the limit and the first day."""
    first = lookback.first_allowed_day(TODAY)
    old = first - dt.timedelta(days=1)
    monkeypatch.setenv("META_SPEND_START_DATE", (first - dt.timedelta(days=30)).isoformat())
    expected = (
        f"the range {old}..{old} starts before {first}: Meta's insights reach back 37 months, so the first day "
        f"Meta serves today ({TODAY}) is {first}; start the range on or after {first}"
    )
    definitions = load()
    tags = {
        "dagster/asset_partition_range_start": old.isoformat(),
        "dagster/asset_partition_range_end": old.isoformat(),
    }
    with dg.instance_for_test() as instance:
        fetch = definitions.resolve_job_def("meta_spend_job").execute_in_process(
            instance=instance,  # the resources of the code location: this test's warehouse, through env
            tags=tags,
            asset_selection=[dg.AssetKey("meta_raw_insights"), dg.AssetKey("meta_spend_daily")],
            raise_on_error=False,
        )
        config = {"config": {"since": old.isoformat(), "until": first.isoformat()}}
        checks = definitions.resolve_job_def("meta_spend_checks_job").execute_in_process(
            instance=instance,
            run_config={"ops": {"meta_spend_daily_checks": config, "meta_spend_anomaly_checks": config}},
            raise_on_error=False,
        )
    failures = {
        e.step_key: e.step_failure_data.user_failure_data.description for e in fetch.all_events if e.is_step_failure
    }
    assert failures == {"meta_raw_insights": expected}
    assert pipeline.sandbox.requests_log() == []  # nothing was asked of Meta
    failures = {
        e.step_key: e.step_failure_data.user_failure_data.description for e in checks.all_events if e.is_step_failure
    }
    assert failures == {
        step: expected.replace(f"{old}..{old}", f"{old}..{first}")
        for step in ("meta_spend_daily_checks", "meta_spend_anomaly_checks")
    }
