"""End to end through the real webserver and daemon: `dagster dev` from the repository root shows
the definitions, and a partition launched over GraphQL is queued, run and written."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key
from metaspend_pipeline_tests._dagster_processes import (
    LAUNCH,
    LOCATION,
    REPOSITORY,
    ROOT,
    GraphQL,
    Processes,
    clean_env,
    dagster_dev,
    free_port,
)
from metaspend_pipeline_tests.dates import day, iso


@pytest.fixture(name="dagster_dev")
def dagster_dev_fixture(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[GraphQL, Sandbox, str]]:
    """`dagster dev` (webserver and daemon) in its own process group, on the sandbox and SQLite."""
    warehouse = tmp_path / "warehouse.db"
    shutil.copyfile(sqlite_template, warehouse)
    url = f"sqlite:///{warehouse}"
    key = generate_key()
    sandbox = Sandbox(11)
    sandbox.configure(async_job_seconds=0.02)
    server = SandboxServer(sandbox).start()
    from metaspend_pipeline.settings import Settings

    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": key}))
    connect_sandbox_organizations(db.engine_for(url), keyring, server.url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = clean_env(
        DAGSTER_HOME=str(home),
        METASPEND_DATABASE_URL=url,
        META_TOKEN_ENCRYPTION_KEY=key,
        META_GRAPH_API_URL=server.url,
        METASPEND_ENV="development",
        META_ASYNC_POLL_INITIAL_SECONDS="0.01",
    )
    try:
        with dagster_dev(env, tmp_path) as graphql:
            yield graphql, sandbox, url
    finally:
        server.stop()
        db.engine_for(url).dispose()


def test_dagster_dev_shows_the_definitions_and_runs_a_partition(dagster_dev: tuple[GraphQL, Sandbox, str]) -> None:
    graphql, sandbox, url = dagster_dev
    [repository] = graphql(REPOSITORY)["repositoriesOrError"]["nodes"]
    assert repository["location"]["name"] == LOCATION
    assert {"meta_spend_job", "meta_token_refresh_job"} <= {j["name"] for j in repository["jobs"]}
    assert {s["name"] for s in repository["schedules"]} == {
        "meta_spend_schedule",
        "meta_token_refresh_schedule",
        "meta_reach_weekly_schedule",
        "meta_reach_monthly_schedule",
    }
    assets = {"/".join(a["assetKey"]["path"]) for a in repository["assetNodes"]}
    assert {"meta_raw_insights", "meta_spend_daily", "meta_roas_by_campaign", "lead", "sale"} <= assets

    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": repository["name"],
            "jobName": "meta_spend_job",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": iso(2)}]},
        "runConfigData": {},
    }
    launched = graphql(LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = graphql.wait_for_run(run_id)
    assert status == "SUCCESS"

    import sqlalchemy as sa

    from metaspend_pipeline.storage.schema import meta_spend_daily

    with db.engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count()).select_from(meta_spend_daily).where(meta_spend_daily.c.date == day(2))
        ).scalar_one()
    expected = sum(
        len(sandbox.world.truth(a, level, day(2), day(2)))
        for o in sandbox.world.organizations
        for a in o.ad_accounts
        for level in ("campaign", "adset", "ad")
    )
    assert rows == expected > 0


def test_a_server_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    """The helpers poll a webserver; when its process has exited they fail now, naming it and
    showing its log, instead of taking connection errors as "still starting" until the deadline."""
    with ExitStack() as stack:
        processes = Processes(stack, tmp_path)
        processes.start("webserver", [sys.executable, "-c", "print('cannot bind the port'); raise SystemExit(3)"], {})
        graphql = GraphQL(free_port(), processes)
        started = time.monotonic()
        with pytest.raises(
            AssertionError, match=r"webserver exited with code 3; its log ends with:\ncannot bind the port"
        ):
            graphql.wait_until_ready(timeout=120)
        with pytest.raises(AssertionError, match="webserver exited with code 3"):
            graphql(REPOSITORY)
        with pytest.raises(AssertionError, match="webserver exited with code 3"):
            graphql.wait_for_run("some-run", timeout=120)
    assert time.monotonic() - started < 30
