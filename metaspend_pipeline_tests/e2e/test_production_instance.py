"""End to end on the production instance: `deploy/dagster.yaml` (runs, events and schedules in
PostgreSQL, the run queue, the meta_api pool, run monitoring, run retries) under the real
`dagster-webserver` and `dagster-daemon`, with the sandbox as Meta and a PostgreSQL warehouse.

Everything goes through GraphQL, as the UI does it: a partition backfill, the spend schedule
switched on, a run whose processes are killed. The runs are then read back from Dagster's own
tables in PostgreSQL, and the warehouse is compared with the sandbox's truth.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
from metaspend_pipeline.meta.client import appsecret_proof
from metaspend_pipeline.sandbox.server import DEFAULT_APP_ID, Sandbox, SandboxServer
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key
from metaspend_pipeline_tests._dagster_processes import (
    LAUNCH,
    LOCATION,
    REPOSITORY,
    ROOT,
    GraphQL,
    clean_env,
    descendants,
    files_text,
    leaks,
    postgres_text,
    wait_for,
    webserver_and_daemon,
)
from metaspend_pipeline_tests.conftest import POSTGRES_ADMIN_URL, _admin, _database_url, _fresh_postgres
from metaspend_pipeline_tests.dates import iso
from metaspend_pipeline_tests.defs.test_assets import sort_rows, spend_rows, truth_rows

pytestmark = pytest.mark.postgres

SPEND_ASSETS = [
    "meta_raw_insights",
    "meta_spend_daily",
    "fx_rates_daily",
    "meta_roas_by_campaign",
    "meta_roas_by_adset",
    "meta_roas_by_ad",
]
BACKFILL = [iso(1), iso(2), iso(3)]
KILLED = (iso(10), iso(12))
MAX_RUNTIME = 10  # seconds, on the killed run only (deploy/dagster.yaml: 6 hours)

START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
  }
}
"""
TICKS = """
query Ticks($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule { scheduleState { ticks(limit: 5) { status runIds error { message } } } }
  }
}
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) { __typename } }
"""
TERMINATE = """
mutation Terminate($runId: String!) { terminateRun(runId: $runId) { __typename } }
"""
LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } ... on PythonError { message } }
}
"""
POOL = """
query { instance { concurrencyLimit(concurrencyKey: "meta_api") { slotCount } } }
"""
LOGS = """
query Logs($runId: ID!) {
  logsForRun(runId: $runId) { ... on EventConnection { events { ... on MessageEvent { message } } } }
}
"""


@dataclass
class Production:
    graphql: GraphQL
    sandbox: Sandbox
    repository: str
    warehouse_url: str
    dagster_url: str
    keyring: KeyRing
    encryption_key: str
    app_secret: str
    home: Path
    logs: Path

    def runs(self, tag: str, value: str) -> list[tuple[str, str]]:
        """(run id, status) of Dagster's runs with this tag, from its `runs` table in PostgreSQL."""
        with psycopg.connect(self.dagster_url) as conn:
            return conn.execute(
                "SELECT r.run_id, r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id "
                "WHERE t.key = %s AND t.value = %s ORDER BY r.id",
                (tag, value),
            ).fetchall()

    def launch(self, start: str, end: str, tags: dict[str, str] | None = None, run_config: dict | None = None) -> str:
        """`meta_spend_job` over [start, end], queued like the UI's launch button."""
        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end, **(tags or {})}
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": self.repository,
                "jobName": "meta_spend_job",
            },
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            "runConfigData": run_config or {},
        }
        launched = self.graphql(LAUNCH, params=params)["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def messages(self, run_id: str) -> list[str]:
        events = self.graphql(LOGS, runId=run_id)["logsForRun"]["events"]
        return [e["message"] for e in events if e.get("message")]


@contextmanager
def _empty_postgres() -> Iterator[str]:
    name = f"metaspend_test_{os.getpid()}_dagster_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def production(postgres_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """A fresh PostgreSQL database for Dagster and one for the warehouse, the sandbox's
    organizations connected, and the webserver and the daemon on a copy of deploy/dagster.yaml."""
    directory = tmp_path_factory.mktemp("production")
    home = directory / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    app_secret = "appsecret" + secrets.token_hex(16)
    sandbox = Sandbox(13)
    sandbox.configure(async_job_seconds=0.02, app_secret=app_secret, require_appsecret_proof=True)
    key = generate_key()
    keyring = KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": key}))
    admin = sa.make_url(POSTGRES_ADMIN_URL)
    with ExitStack() as stack:
        dagster_url = stack.enter_context(_empty_postgres())
        warehouse_url = stack.enter_context(contextmanager(_fresh_postgres)(postgres_template))
        server = stack.enter_context(SandboxServer(sandbox))
        connect_sandbox_organizations(db.engine_for(warehouse_url), keyring, server.url)
        env = clean_env(
            DAGSTER_HOME=str(home),
            DAGSTER_PG_HOST=admin.host or "127.0.0.1",
            DAGSTER_PG_PORT=str(admin.port or 5432),
            DAGSTER_PG_DB=sa.make_url(dagster_url).database or "",
            DAGSTER_PG_USER=admin.username or "postgres",
            DAGSTER_PG_PASSWORD=admin.password or "",
            METASPEND_ENV="development",  # the sandbox is plain http on 127.0.0.1
            METASPEND_DATABASE_URL=warehouse_url,
            META_TOKEN_ENCRYPTION_KEY=key,
            META_GRAPH_API_URL=server.url,
            META_APP_ID=DEFAULT_APP_ID,
            META_APP_SECRET=app_secret,
            META_RETRY_BASE_DELAY_SECONDS="0.001",
            META_RETRY_MAX_WAIT_SECONDS="0.02",
            META_ASYNC_POLL_INITIAL_SECONDS="0.01",
            # a tick every minute, for yesterday alone
            META_SPEND_CRON="* * * * *",
            META_SPEND_LOOKBACK_DAYS="0",
            METASPEND_ROAS_LOOKBACK_DAYS="1",
        )
        graphql = stack.enter_context(webserver_and_daemon(env, directory))
        [repository] = graphql(REPOSITORY)["repositoriesOrError"]["nodes"]
        yield Production(
            graphql=graphql,
            sandbox=sandbox,
            repository=repository["name"],
            warehouse_url=warehouse_url,
            dagster_url=dagster_url,
            keyring=keyring,
            encryption_key=key,
            app_secret=app_secret,
            home=home,
            logs=directory,
        )
        db.engine_for(warehouse_url).dispose()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_backfill_schedule_and_a_dead_run_on_the_production_instance(production: Production) -> None:
    gql = production.graphql
    schedule = {
        "repositoryLocationName": LOCATION,
        "repositoryName": production.repository,
        "scheduleName": "meta_spend_schedule",
    }

    # The schedule goes on first: its tick comes at the next minute, checked last.
    started = gql(START_SCHEDULE, selector=schedule)["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    assert started["scheduleState"]["status"] == "RUNNING"

    # A partition backfill, as the UI launches it: one run for the range (single-run policy).
    launched = gql(
        LAUNCH_BACKFILL,
        params={
            "assetSelection": [{"path": [k]} for k in SPEND_ASSETS],
            "partitionNames": BACKFILL,
            "runConfigData": {},
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    [(run_id, _)] = wait_for(
        lambda: production.runs("dagster/backfill", backfill_id) or None,
        120,
        "the backfill's run",
        gql.processes.check_alive,
    )
    assert gql.wait_for_run(run_id) == "SUCCESS"
    first, last = dt.date.fromisoformat(BACKFILL[0]), dt.date.fromisoformat(BACKFILL[-1])
    written = [r for r in spend_rows(db.engine_for(production.warehouse_url)) if first <= r[3] <= last]
    truth = truth_rows(SimpleNamespace(sandbox=production.sandbox), start=BACKFILL[0], end=BACKFILL[-1])  # type: ignore[arg-type]
    assert sort_rows(written) == truth
    assert len(truth) > 100
    # the meta_api pool its fetch ran in has the instance's default limit
    assert gql(POOL)["instance"]["concurrencyLimit"]["slotCount"] == 2

    # The machine of the daemon crashes during a run: the daemon, its code server and the run's
    # worker are killed, and the daemon comes back. Nothing is left to report the run, so run
    # monitoring fails it once it is past its maximum runtime, and run retries relaunch it.
    production.sandbox.configure(latency_seconds=0.3)  # keeps it fetching while it is killed
    killed = production.launch(*KILLED, tags={"dagster/max_runtime": str(MAX_RUNTIME)})
    wait_for(
        lambda: True if gql.run_status(killed) == "STARTED" else None,
        120,
        f"run {killed} to start",
        gql.processes.check_alive,
    )
    [worker] = [
        int(m[1])
        for msg in production.messages(killed)
        if (m := re.search(r"Started process for run \(pid: (\d+)\)", msg))
    ]
    assert _parent(worker) in descendants(gql.processes.running["daemon"][0].pid)  # the daemon's code server
    gql.processes.crash_and_restart("daemon")
    assert gql.run_status(killed) == "STARTED"
    production.sandbox.configure(latency_seconds=0.0)
    assert gql.wait_for_run(killed, timeout=MAX_RUNTIME + 90) == "FAILURE"
    messages = production.messages(killed)
    assert f"Canceling due to exceeding maximum runtime of {MAX_RUNTIME} seconds." in messages, messages
    assert any(m.startswith("This job is being forcibly marked as failed") for m in messages), messages
    [(retry, _)] = wait_for(
        lambda: production.runs("dagster/parent_run_id", killed) or None, 60, "a retry", gql.processes.check_alive
    )
    gql(TERMINATE, runId=retry)  # it has shown what it had to; it would only load the machine

    # The backfill is marked finished by the daemon's next pass.
    status = wait_for(
        lambda: (
            s
            if (s := gql(BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]["status"]) != "REQUESTED"
            else None
        ),
        90,
        f"backfill {backfill_id}",
        gql.processes.check_alive,
    )
    assert status == "COMPLETED_SUCCESS"

    # The schedule's first tick launched its run, for yesterday (META_SPEND_LOOKBACK_DAYS=0).
    def launched_tick() -> dict | None:
        ticks = gql(TICKS, selector=schedule)["scheduleOrError"]["scheduleState"]["ticks"]
        return next((t for t in reversed(ticks) if t["status"] in {"SUCCESS", "FAILURE"}), None)

    tick = wait_for(launched_tick, 90, "a tick of meta_spend_schedule", gql.processes.check_alive)
    gql(STOP_SCHEDULE, id=started["scheduleState"]["id"])
    assert tick["status"] == "SUCCESS", tick
    [tick_run] = tick["runIds"]
    assert tick_run in {r for r, _ in production.runs("dagster/schedule_name", "meta_spend_schedule")}
    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
    with psycopg.connect(production.dagster_url) as conn:
        tags = dict(conn.execute("SELECT key, value FROM run_tags WHERE run_id = %s", (tick_run,)).fetchall())
    assert tags["dagster/asset_partition_range_start"] == tags["dagster/asset_partition_range_end"] == yesterday


def test_no_secret_in_the_event_log_compute_logs_or_output_on_postgres(production: Production) -> None:
    """A run fails on a token Meta rejects, with an app secret set (appsecret_proof sent): neither
    the token, nor its proof, nor the app secret, nor any working token is stored anywhere."""
    fake_token = "EAAtest" + secrets.token_hex(16)
    with db.engine_for(production.warehouse_url).begin() as conn:
        credentials.store_connection(
            conn, production.keyring, "leak-org", "FACEBOOK", ["act_1000000001"], fake_token, None
        )
    run_id = production.launch(
        iso(5),
        iso(5),
        run_config={"ops": {"meta_raw_insights": {"config": {"organizations": ["leak-org"]}}}},
    )
    assert production.graphql.wait_for_run(run_id) == "FAILURE"
    fingerprint = hashlib.sha256(fake_token.encode()).hexdigest()[:12]
    sent = [r for r in production.sandbox.requests_log() if r["token_fingerprint"] == fingerprint]
    assert sent and all(r["appsecret_proof"] for r in sent)  # the token and its proof did go to Meta

    found = {
        "the fake token": fake_token,
        "its appsecret_proof": appsecret_proof(fake_token, production.app_secret),
        "the app secret": production.app_secret,
        "the encryption key": production.encryption_key,
    }
    for org in production.sandbox.organizations():
        found[f"{org['organization_id']}'s token"] = org["token"]
        found[f"{org['organization_id']}'s appsecret_proof"] = appsecret_proof(org["token"], production.app_secret)
    texts = {**postgres_text(production.dagster_url), **files_text(production.logs)}
    assert "organization leak-org" in texts["event_logs"]  # the failure was recorded, and read here
    assert any("/storage/" in place for place in texts), sorted(texts)  # and so were compute logs
    assert leaks(texts, found) == []
