"""Faults a production run meets, on real processes and databases: a run SIGKILLed while it writes,
PostgreSQL restarted under a run, and what failing runs leave behind (no secret anywhere).

A writer is caught in the middle of its transaction deterministically: the test holds a row lock
on one organization's rows of `meta_spend_daily`, so the run's merge for that organization waits
inside its transaction until the test has killed the run (or restarted the server).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
from metaspend_pipeline.meta.client import appsecret_proof
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import meta_spend_daily
from metaspend_pipeline.tokens import KeyRing
from metaspend_pipeline_tests._dagster_processes import (
    BIN,
    ROOT,
    clean_env,
    crash,
    files_text,
    free_port,
    leaks,
    wait_for,
)
from metaspend_pipeline_tests.conftest import IN_CI, Pipeline, _fresh_postgres, _fresh_sqlite
from metaspend_pipeline_tests.dates import iso
from metaspend_pipeline_tests.defs.test_assets import sort_rows, spend_rows, truth_rows

START, END = iso(1), iso(3)
LOCKED_ORG = "demo-org-2"
# The server binaries of the newest PostgreSQL installed (Debian's layout), for a throwaway cluster.
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin/initdb"), default=Path("/usr/lib/postgresql/15/bin/initdb")).parent


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, encryption_key: str, sandbox_server: SandboxServer) -> str:
    """Nothing of the project's settings inherited, this test's token encryption key, and the
    sandbox as Meta for the runs in this process (they must not depend on an earlier test's env)."""
    for name in list(os.environ):
        if name.startswith(("META_", "METASPEND_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("META_TOKEN_ENCRYPTION_KEY", encryption_key)
    monkeypatch.setenv("METASPEND_ENV", "development")
    monkeypatch.setenv("META_GRAPH_API_URL", sandbox_server.url)
    return encryption_key


def _materialize(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster asset materialize` of the spend assets over [START, END], in its own process group."""
    with log.open("w") as out:
        return subprocess.Popen(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "metaspend_pipeline.definitions",
                "--select",
                "meta_raw_insights*,fx_rates_daily",
                "--partition-range",
                f"{START}...{END}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _run_env(url: str, home: Path, sandbox_url: str, **more: str) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    return clean_env(
        DAGSTER_HOME=str(home),
        METASPEND_ENV="development",  # the sandbox is plain http on 127.0.0.1
        METASPEND_DATABASE_URL=url,
        META_TOKEN_ENCRYPTION_KEY=os.environ["META_TOKEN_ENCRYPTION_KEY"],
        META_GRAPH_API_URL=sandbox_url,
        META_RETRY_BASE_DELAY_SECONDS="0.001",
        META_RETRY_MAX_WAIT_SECONDS="0.02",
        META_ASYNC_POLL_INITIAL_SECONDS="0.01",
        **more,
    )


def _days(engine: sa.Engine) -> dict[tuple[str, dt.date], list[tuple]]:
    """meta_spend_daily as a reader sees it, per (organization, day)."""
    days: dict[tuple[str, dt.date], list[tuple]] = defaultdict(list)
    for row in spend_rows(engine):
        days[(row[0], row[3])].append(row)
    return {k: sort_rows(v) for k, v in days.items()}


def _doubled(engine: sa.Engine) -> dict[tuple[str, dt.date], list[tuple]]:
    """Every amount doubled, as if Meta had restated the days since: the "old" state a run replaces."""
    with engine.begin() as conn:
        conn.execute(meta_spend_daily.update().values(spend=meta_spend_daily.c.spend * 2))
    return _days(engine)


@contextmanager
def _lock_rows_of(url: str, organization_id: str) -> Iterator[psycopg.Connection]:
    """Hold row locks on one of the organization's rows of meta_spend_daily, in an open transaction."""
    conn = psycopg.connect(sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        conn.execute(
            "SELECT 1 FROM meta_spend_daily WHERE organization_id = %s ORDER BY date DESC, id DESC LIMIT 1 FOR UPDATE",
            (organization_id,),
        )
        yield conn
    finally:
        conn.close()


def _blocked_by(conn: psycopg.Connection) -> list[int]:
    """Backends waiting for a lock this connection holds."""
    with psycopg.connect(conn.info.dsn, autocommit=True) as watcher:
        rows = watcher.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (conn.info.backend_pid,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _gone(dsn: str, pids: list[int]) -> bool:
    with psycopg.connect(dsn, autocommit=True) as watcher:
        return not watcher.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchall()


def _assert_whole_days(
    now: dict[tuple[str, dt.date], list[tuple]],
    old: dict[tuple[str, dt.date], list[tuple]],
    new: dict[tuple[str, dt.date], list[tuple]],
) -> None:
    assert set(now) == set(old) == set(new)
    mixed = [key for key in now if now[key] not in (old[key], new[key])]
    assert mixed == [], f"days neither entirely old nor entirely new: {mixed}"


def _new_days(pipeline: Pipeline) -> dict[tuple[str, dt.date], list[tuple]]:
    days: dict[tuple[str, dt.date], list[tuple]] = defaultdict(list)
    for row in truth_rows(pipeline, start=START, end=END):
        days[(row[0], row[3])].append(row)
    return dict(days)


@pytest.mark.postgres
def test_a_run_killed_in_the_middle_of_writing_leaves_whole_days_and_the_next_run_is_exact(
    postgres_template: str, key: str, sandbox: Sandbox, sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    with contextmanager(_fresh_postgres)(postgres_template) as url:
        pipeline = _connected(url, sandbox, sandbox_server)
        assert pipeline.run(START, END).success
        old, new = _doubled(pipeline.engine), _new_days(pipeline)

        log = tmp_path / "materialize.log"
        with _lock_rows_of(url, LOCKED_ORG) as lock:
            dsn = lock.info.dsn
            proc = _materialize(_run_env(url, tmp_path / "dagster_home", sandbox_server.url), log)
            try:
                writer = wait_for(
                    lambda: _blocked_by(lock) or None, 180, "the run to write meta_spend_daily", _alive(proc, log)
                )
            finally:
                crash(proc)
        # the killed run's backend rolls back once it finds its client gone
        wait_for(lambda: True if _gone(dsn, writer) else None, 30, "the backend to end", lambda: None)

        now = _days(pipeline.engine)
        _assert_whole_days(now, old, new)
        assert all(now[key] == old[key] for key in now if key[0] == LOCKED_ORG)  # caught mid-write: rolled back

        assert pipeline.run(START, END).success
        assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, start=START, end=END)


def _alive(proc: subprocess.Popen, log: Path):  # type: ignore[no-untyped-def]
    def check() -> None:
        if proc.poll() is not None:
            raise AssertionError(
                f"the run exited with {proc.returncode} before the test could act:\n{log.read_text()[-4000:]}"
            )

    return check


def _connected(url: str, sandbox: Sandbox, sandbox_server: SandboxServer) -> Pipeline:
    sandbox.configure(async_job_seconds=0.02)
    connect_sandbox_organizations(db.engine_for(url), KeyRing.from_env(), sandbox_server.url)
    return Pipeline(url, sandbox, sandbox_server.url)


# --- PostgreSQL restarted under a run --------------------------------------------------------------


class Cluster:
    """A throwaway PostgreSQL cluster, never the shared one; as `postgres` when the tests run as
    root (initdb refuses root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="metaspend-pg-"))
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self.port = free_port()

    def _as_postgres(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_root else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def pg_ctl(self, action: str, *more: str) -> None:
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-o",
            f"-p {self.port} -k {self.directory}",
            "-l",
            str(self.directory / "log"),
            "-w",
            *more,
            action,
        )

    def __enter__(self) -> Cluster:
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres")
        self.pg_ctl("start")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.mark.postgres
def test_postgres_restarted_during_a_run_fails_it_cleanly_and_the_next_run_is_exact(
    key: str, sandbox: Sandbox, sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    if not (PG_BIN / "initdb").exists():
        message = f"{PG_BIN / 'initdb'} is missing: this test runs a throwaway PostgreSQL cluster"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with Cluster() as cluster:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE warehouse")
        url = cluster.url("warehouse")
        db.upgrade(url)
        pipeline = _connected(url, sandbox, sandbox_server)
        assert pipeline.run(START, END).success
        old, new = _doubled(pipeline.engine), _new_days(pipeline)

        log = tmp_path / "materialize.log"
        proc = _materialize(_run_env(url, tmp_path / "dagster_home", sandbox_server.url), log)
        try:
            with _lock_rows_of(url, LOCKED_ORG) as lock:
                wait_for(lambda: _blocked_by(lock) or None, 180, "the run to write meta_spend_daily", _alive(proc, log))
                cluster.pg_ctl("restart", "-m", "fast")  # every session ends, the run's mid-transaction
            returncode = proc.wait(timeout=120)
        finally:
            crash(proc)
        output = log.read_text()
        # fails cleanly: the run ends by itself, as a failed run of the step that was writing
        assert returncode == 1, output[-4000:]
        assert "meta_spend_daily - STEP_FAILURE" in output and "RUN_FAILURE" in output, output[-4000:]

        db.engine_for(url).dispose()  # the pool's connections died with the restart
        now = _days(pipeline.engine)
        _assert_whole_days(now, old, new)
        assert all(now[key] == old[key] for key in now if key[0] == LOCKED_ORG)

        assert pipeline.run(START, END).success
        assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, start=START, end=END)
        db.engine_for(url).dispose()


# --- no secret in what failing runs leave ----------------------------------------------------------


def test_no_secret_in_the_event_log_compute_logs_or_output_on_sqlite(
    key: str, sandbox: Sandbox, sandbox_server: SandboxServer, sqlite_template: Path, tmp_path: Path
) -> None:
    """A run on the local (SQLite) instance fails on a token Meta rejects, with an app secret set:
    the event log (every record, all metadata), the runs, compute logs and the CLI's output hold
    neither the token, nor its appsecret_proof, nor the app secret, nor a working token."""
    import dagster as dg
    from dagster._serdes import serialize_value

    app_secret = "appsecret" + secrets.token_hex(16)
    fake_token = "EAAtest" + secrets.token_hex(16)
    sandbox.configure(app_secret=app_secret, require_appsecret_proof=True)
    with contextmanager(_fresh_sqlite)(sqlite_template, tmp_path) as url:
        pipeline = _connected(url, sandbox, sandbox_server)
        with pipeline.engine.begin() as conn:
            credentials.store_connection(
                conn, KeyRing.from_env(), "leak-org", "FACEBOOK", ["act_1000000001"], fake_token, None
            )
        home = tmp_path / "dagster_home"
        log = tmp_path / "materialize.log"
        proc = _materialize(_run_env(url, home, sandbox_server.url, META_APP_SECRET=app_secret), log)
        try:
            assert proc.wait(timeout=300) == 1, log.read_text()[-4000:]
        finally:
            crash(proc)

    fingerprint = hashlib.sha256(fake_token.encode()).hexdigest()[:12]
    sent = [r for r in sandbox.requests_log() if r["token_fingerprint"] == fingerprint]
    assert sent and all(r["appsecret_proof"] for r in sent)  # the token and its proof did go to Meta

    texts = files_text(home)
    texts["CLI output"] = log.read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        texts["run"] = serialize_value(run)
        records = instance.all_logs(run.run_id)
        texts["event log"] = "\n".join(serialize_value(r) for r in records)
    assert any("leak-org" in (r.user_message or "") for r in records)
    found = {
        "the fake token": fake_token,
        "its appsecret_proof": appsecret_proof(fake_token, app_secret),
        "the app secret": app_secret,
        "the encryption key": os.environ["META_TOKEN_ENCRYPTION_KEY"],
    }
    for org in sandbox.organizations():
        found[f"{org['organization_id']}'s token"] = org["token"]
        found[f"{org['organization_id']}'s appsecret_proof"] = appsecret_proof(org["token"], app_secret)
    assert any(path.startswith(str(home / "storage")) for path in texts), sorted(texts)  # compute logs were read
    assert leaks(texts, found) == []
