"""End to end through the real webserver and daemon: `dagster dev` from the repository root shows
the definitions, and a partition launched over GraphQL is queued, run and written."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from metaspend_pipeline.meta.sandbox.client import connect_sandbox_organizations
from metaspend_pipeline.meta.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "metaspend_pipeline.definitions"

REPOSITORY = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } schedules { name } assetNodes { assetKey { path } } }
    }
  }
}
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, Sandbox, str]]:
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
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        METASPEND_DATABASE_URL=url,
        META_TOKEN_ENCRYPTION_KEY=key,
        META_GRAPH_API_URL=server.url,
        METASPEND_ENV="development",
        META_ASYNC_POLL_INITIAL_SECONDS="0.01",
    )
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "dagster_dev.log").open("w"),
        start_new_session=True,
    )
    graphql = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.post(graphql, json={"query": REPOSITORY}, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            time.sleep(1)
        yield graphql, sandbox, url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        server.stop()
        db.engine_for(url).dispose()


def _gql(graphql: str, query: str, **variables: object) -> dict:
    response = requests.post(graphql, json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.mark.e2e
def test_dagster_dev_shows_the_definitions_and_runs_a_partition(dagster_dev: tuple[str, Sandbox, str]) -> None:
    graphql, sandbox, url = dagster_dev
    [repository] = _gql(graphql, REPOSITORY)["repositoriesOrError"]["nodes"]
    assert repository["location"]["name"] == LOCATION
    assert {"meta_spend_job", "meta_token_refresh_job"} <= {j["name"] for j in repository["jobs"]}
    assert {s["name"] for s in repository["schedules"]} == {"meta_spend_schedule", "meta_token_refresh_schedule"}
    assets = {"/".join(a["assetKey"]["path"]) for a in repository["assetNodes"]}
    assert {"meta_raw_insights", "meta_spend_daily", "meta_roas_by_campaign", "lead", "sale"} <= assets

    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": repository["name"],
            "jobName": "meta_spend_job",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-10-02"}]},
        "runConfigData": {},
    }
    launched = _gql(graphql, LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = _gql(graphql, STATUS, runId=run_id)["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(1)
    assert status == "SUCCESS"

    import sqlalchemy as sa

    from metaspend_pipeline.storage.schema import meta_spend_daily

    with db.engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.count())
            .select_from(meta_spend_daily)
            .where(meta_spend_daily.c.date == dt.date(2026, 10, 2))
        ).scalar_one()
    expected = sum(
        len(sandbox.world.truth(a, level, dt.date(2026, 10, 2), dt.date(2026, 10, 2)))
        for o in sandbox.world.organizations
        for a in o.ad_accounts
        for level in ("campaign", "adset", "ad")
    )
    assert rows == expected > 0
