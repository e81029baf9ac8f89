"""`metaspend backfill`: a validated range, submitted as a Dagster backfill or run now with a summary."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from dagster._core.execution.backfill import BulkActionStatus

from metaspend_pipeline.cli import cli
from metaspend_pipeline.defs.meta_spend.jobs import API_VERSION_CURRENT, SPEND_ASSETS
from metaspend_pipeline.meta.lookback import first_allowed_day
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline_tests._dagster_processes import clean_env, free_port, wait_for, webserver_and_daemon
from metaspend_pipeline_tests.conftest import POSTGRES_ADMIN_URL, Listener, Pipeline, _admin, require_postgres
from metaspend_pipeline_tests.dates import TODAY, iso
from metaspend_pipeline_tests.defs.test_assets import sort_rows, spend_rows, truth_rows

ROOT = Path(__file__).resolve().parents[2]
SINCE, UNTIL = iso(1), iso(3)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["backfill", *args], catch_exceptions=False)


@pytest.fixture
def dagster_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pipeline: Pipeline) -> Path:
    """A Dagster instance of the test's own, and the pipeline's environment pointed at the sandbox."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("META_GRAPH_API_URL", pipeline.sandbox_url)
    monkeypatch.setenv("META_ASYNC_POLL_INITIAL_SECONDS", "0.01")
    with dg.DagsterInstance.get():  # its storage created now, not by two processes starting at once
        pass
    return home


def spend_by_currency(rows: list[tuple]) -> dict[str, Decimal]:
    """Campaign-level spend per currency, from rows shaped like `truth_rows`."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row[2] == "CAMPAIGN":
            totals[row[7]] += row[8]
    return dict(totals)


def summary_line(totals: dict[str, Decimal]) -> str:
    return "spend (campaign level): " + ", ".join(f"{c} {v:,.2f}" for c, v in sorted(totals.items()))


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (iso(3), iso(1), f"--from {iso(3)} is after --to {iso(1)}"),
        ("2023-12-31", "2024-01-02", "--from 2023-12-31 is before META_SPEND_START_DATE (2024-01-01)"),
        (iso(1), "2026-02-30", "--to '2026-02-30' is not a date"),
        ("yesterday", iso(1), "--from 'yesterday' is not a date"),
    ],
)
def test_a_bad_range_is_one_line_exit_2_and_submits_nothing(
    dagster_home: Path, listener: Listener, since: str, until: str, message: str
) -> None:
    result = run("--from", since, "--to", until, "--dagster-url", listener.url)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    listener.assert_records_what_reaches_it()
    assert listener.received == [b"control"]  # nothing was sent to the webserver
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # refused before the warehouse is opened
def test_a_range_older_than_meta_serves_is_refused_naming_the_limit_and_the_first_day(
    env: dict[str, str], listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = first_allowed_day(TODAY)
    old = first - dt.timedelta(days=1)
    monkeypatch.setenv("META_SPEND_START_DATE", (first - dt.timedelta(days=30)).isoformat())
    result = run("--from", old.isoformat(), "--to", first.isoformat(), "--dagster-url", listener.url)
    assert result.exit_code == 2
    assert result.output == (
        f"metaspend: error: --from {old}: the range {old}..{first} starts before {first}: Meta's insights reach "
        f"back 37 months, so the first day Meta serves today ({TODAY}) is {first}; start the range on or after "
        f"{first}\n"
    )
    listener.assert_records_what_reaches_it()
    assert listener.received == [b"control"]  # nothing was sent to the webserver
    # the first day Meta serves is accepted: only the webserver is missing then
    closed = f"http://127.0.0.1:{free_port()}"
    result = run("--from", first.isoformat(), "--to", first.isoformat(), "--dagster-url", closed)
    assert result.exit_code == 2 and "no Dagster webserver answers" in result.output


def test_today_is_not_a_partition_yet(dagster_home: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    result = run("--from", (today - dt.timedelta(days=1)).isoformat(), "--to", today.isoformat())
    assert result.exit_code == 2
    assert f"the last partition is yesterday, {today - dt.timedelta(days=1)} (UTC)" in result.output
    closed = f"http://127.0.0.1:{free_port()}"
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    result = run("--from", yesterday, "--to", yesterday, "--dagster-url", closed)
    # past the range's checks: only the webserver is missing
    assert result.exit_code == 2
    assert result.output.startswith(f"metaspend: error: no Dagster webserver answers at {closed}: start the UI")


def test_an_unknown_organization_is_exit_2(dagster_home: Path, listener: Listener) -> None:
    result = run("--from", SINCE, "--to", UNTIL, "--org", "org-nobody", "--dagster-url", listener.url)
    assert result.exit_code == 2
    assert "organization org-nobody has no CONNECTED Meta account" in result.output
    listener.assert_records_what_reaches_it()
    assert listener.received == [b"control"]


def test_a_dagster_url_that_is_not_a_webserver_address_is_refused(dagster_home: Path) -> None:
    result = run("--from", SINCE, "--to", UNTIL, "--dagster-url", "http://127.0.0.1:3000/?token=abc")
    assert result.exit_code == 2
    assert "is not the webserver's address" in result.output
    assert "abc" not in result.output


def test_wait_runs_now_shows_progress_and_a_summary_equal_to_the_truth(
    dagster_home: Path, pipeline: Pipeline, capfd: pytest.CaptureFixture[str]
) -> None:
    before = len(pipeline.sandbox.requests_log())
    result = CliRunner().invoke(
        cli, ["backfill", "--from", SINCE, "--to", UNTIL, "--org", "demo-org-2", "--wait"], catch_exceptions=False
    )
    requests = len(pipeline.sandbox.requests_log()) - before
    assert result.exit_code == 0, result.output
    truth = truth_rows(pipeline, ["demo-org-2"], SINCE, UNTIL)
    assert sort_rows(spend_rows(pipeline.engine)) == truth
    stdout = result.stdout
    assert "days: 3\n" in stdout
    assert f"rows: {len(truth)} in meta_spend_daily" in stdout
    assert summary_line(spend_by_currency(truth)) + "\n" in stdout
    assert f"Meta requests: {requests}\n" in stdout
    stderr = result.stderr + capfd.readouterr().err
    assert "DEBUG" not in stderr
    assert f"meta_raw_insights: fetching 1 organization(s), {iso(1)}..{iso(3)}" in stderr
    with dg.DagsterInstance.get() as instance:
        run_id = instance.get_run_records()[0].dagster_run.run_id
    with pipeline.engine.connect() as conn:
        fetched = {o.report: o for o in raw_store.fetches_of_run(conn, run_id, report=None)}
    assert set(fetched) == {"spend", "breakdowns"} and sum(o.requests for o in fetched.values()) == requests
    for outcome in fetched.values():  # a progress line per fetch of the ad account: the spend's, the breakdowns'
        assert f"organization demo-org-2, ad account act_2000000001: {outcome.requests} requests" in stderr
    assert f"breakdowns: {fetched['breakdowns'].rows} rows fetched\n" in stdout
    assert f"meta_spend_daily: done, 3 day(s) written ({iso(1)}..{iso(3)})\n" in stderr
    assert f"meta_roas: done, meta_roas_by_campaign 3 day(s) written ({iso(1)}..{iso(3)}); meta_roas_by_adset" in stderr
    with dg.DagsterInstance.get() as instance:
        [record] = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.job_name == "meta_spend_job"
        assert record.dagster_run.tags["dagster/asset_partition_range_end"] == UNTIL
        assert f"run {record.dagster_run.run_id}: succeeded" in stdout
    for org in pipeline.sandbox.world.organizations:
        assert org.token not in result.output + stderr


def test_wait_exits_1_and_names_the_failure(dagster_home: Path, pipeline: Pipeline) -> None:
    pipeline.sandbox.add_faults([{"kind": "token_invalid", "times": 1000}])
    result = CliRunner().invoke(
        cli, ["backfill", "--from", SINCE, "--to", SINCE, "--org", "demo-org-2", "--wait"], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.stdout
    assert "failed: organization demo-org-2" in result.stdout
    assert "meta_raw_insights: FAILED: every fetch failed" in result.stderr


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # slow (a real daemon): one warehouse is enough
def test_a_submitted_backfill_reaches_the_webserver_and_the_daemon_runs_it(
    dagster_home: Path, pipeline: Pipeline, tmp_path: Path
) -> None:
    """Submitted through the webserver's GraphQL API (the UI's own), listed with its range, title and run
    config, and run by the daemon as one run that writes the sandbox's truth."""
    env = clean_env(**{k: v for k, v in os.environ.items() if k.startswith(("META_", "METASPEND_", "DAGSTER_"))})
    with webserver_and_daemon(env, tmp_path) as graphql:
        url = graphql.url.removesuffix("/graphql")
        result = run("--from", SINCE, "--to", UNTIL, "--org", "demo-org-3", "--dagster-url", url)
        assert result.exit_code == 0, result.output
        with dg.DagsterInstance.get() as instance:
            [backfill] = instance.get_backfills()
            assert f"submitted backfill {backfill.backfill_id}: metaspend backfill {SINCE} to {UNTIL}" in result.output
            assert set(backfill.asset_selection) == set(SPEND_ASSETS)
            assert backfill.run_config == {"ops": {"meta_raw_insights": {"config": {"organizations": ["demo-org-3"]}}}}
            target = backfill.asset_backfill_data.target_subset
            for key in SPEND_ASSETS:
                assert set(target.get_partitions_subset(key).get_partition_keys()) == {iso(1), iso(2), iso(3)}
            assert backfill.title == f"metaspend backfill {iso(1)} to {iso(3)} for demo-org-3"
            assert backfill.tags["metaspend/command"] == "backfill"

            def done() -> object:
                [current] = instance.get_backfills()
                return current if current.status != BulkActionStatus.REQUESTED else None

            finished = wait_for(done, 240, "the daemon to run the backfill", graphql.processes.check_alive)
            assert finished.status == BulkActionStatus.COMPLETED_SUCCESS
            [run_record] = instance.get_run_records()
            tags = run_record.dagster_run.tags
            assert (tags[RANGE_START], tags[RANGE_END], tags["dagster/backfill"]) == (
                SINCE,
                UNTIL,
                backfill.backfill_id,
            )
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, ["demo-org-3"], SINCE, UNTIL)


def test_a_reversed_partition_range_fails_the_assets_and_checks_and_writes_nothing(pipeline: Pipeline) -> None:
    result = pipeline.run(iso(3), iso(1))
    assert not result.success
    failures = {e.step_key: e.step_failure_data.user_failure_data for e in result.all_events if e.is_step_failure}
    assert "meta_raw_insights" in failures
    assert failures["meta_raw_insights"].description == (
        f"the partition range {iso(3)}...{iso(1)} is empty: it starts after it ends; "
        f"give the earlier day first ({iso(1)}...{iso(3)})"
    )
    assert result.get_asset_check_evaluations() == []
    assert spend_rows(pipeline.engine) == []
    # every check but meta_api_version_current, which only its asset yields
    checks_alone = dg.AssetSelection.checks_for_assets(*SPEND_ASSETS) - dg.AssetSelection.checks(API_VERSION_CURRENT)
    checks = pipeline.run(iso(3), iso(1), asset_selection=checks_alone)
    assert not checks.success
    # only the checks of the run's own fetches and writes (none here) evaluate; every check of the range fails
    assert {e.check_name for e in checks.get_asset_check_evaluations()} == {
        "every_organization_fetched",
        "every_organization_written",
    }
    failed_checks = {e.step_key for e in checks.all_events if e.is_step_failure}
    assert {"meta_spend_daily_checks", "meta_roas_checks"} <= failed_checks


def test_wait_without_dagster_home_says_so(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = run("--from", SINCE, "--to", UNTIL, "--wait")
    assert result.exit_code == 2
    assert result.output.startswith("metaspend: error: DAGSTER_HOME is not set")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the warehouse does not matter here
def test_wait_on_the_production_instance_config(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """deploy/dagster.yaml keeps runs and events in PostgreSQL; a run must be able to start on it."""
    require_postgres()
    name = f"metaspend_test_{os.getpid()}_dagster_{uuid.uuid4().hex[:8]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        url = sa.make_url(POSTGRES_ADMIN_URL)
        for variable, value in {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": url.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(url.port or 5432),
            "DAGSTER_PG_DB": name,
            "DAGSTER_PG_USER": url.username or "postgres",
            "DAGSTER_PG_PASSWORD": url.password or "",
            "META_GRAPH_API_URL": pipeline.sandbox_url,
            "METASPEND_ENV": "development",
            "META_ASYNC_POLL_INITIAL_SECONDS": "0.01",
        }.items():
            monkeypatch.setenv(variable, value)
        result = run("--from", SINCE, "--to", SINCE, "--org", "demo-org-2", "--wait")
        assert result.exit_code == 0, result.output
        with dg.DagsterInstance.get() as instance:
            [record] = instance.get_run_records()
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            assert instance.get_materialized_partitions(dg.AssetKey("meta_roas_by_ad")) == {SINCE}
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
