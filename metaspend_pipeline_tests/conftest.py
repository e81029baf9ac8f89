"""Fixtures on real parts: a migrated SQLite file and a migrated PostgreSQL database per test.

PostgreSQL runs when METASPEND_TEST_POSTGRES_URL is set or a server answers on 127.0.0.1:5432;
with CI=true its tests must run, so an unreachable server fails them instead of skipping, and so
does every other skip: under CI=true nothing is skipped silently.

The suite runs in parallel (pytest-xdist): every fixture is per process (databases named after the
worker's pid, the sandbox on port 0, Dagster homes and warehouses under tmp_path), and the slow
end-to-end tests are collected first so that no worker ends the run alone on one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.meta.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import generate_key

POSTGRES_ADMIN_URL = os.environ.get("METASPEND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _postgres_answers() -> bool:
    url = sa.make_url(POSTGRES_ADMIN_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=1):
            return True
    except OSError:
        return False


POSTGRES_AVAILABLE = bool(os.environ.get("METASPEND_TEST_POSTGRES_URL")) or _postgres_answers()


def _admin() -> psycopg.Connection:
    url = sa.make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def _database_url(name: str) -> str:
    url = sa.make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


def require_postgres() -> None:
    if POSTGRES_AVAILABLE:
        return
    message = f"PostgreSQL does not answer at {db.display_url(POSTGRES_ADMIN_URL)}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires the PostgreSQL tests to run")
    pytest.skip(f"{message}; set METASPEND_TEST_POSTGRES_URL or start a server to run these tests")


# scripts/mutation runs the tests once per mutant, each run a new session: it migrates one template
# per backend beforehand and names them here, so that a run copies them instead of migrating again.
# (Migrations are not among the mutated modules, so a template migrated once is the same for all.)
SHARED_POSTGRES_TEMPLATE = os.environ.get("METASPEND_TEST_POSTGRES_TEMPLATE")
SHARED_SQLITE_TEMPLATE = os.environ.get("METASPEND_TEST_SQLITE_TEMPLATE")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    require_postgres()
    if SHARED_POSTGRES_TEMPLATE:
        yield SHARED_POSTGRES_TEMPLATE
        return
    name = f"metaspend_test_{os.getpid()}_tpl"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    db.upgrade(url)
    db.engine_for(url).dispose()
    yield name
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SHARED_SQLITE_TEMPLATE:
        return Path(SHARED_SQLITE_TEMPLATE)
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    db.engine_for(url).dispose()
    return path


def _fresh_postgres(template: str) -> Iterator[str]:
    name = f"metaspend_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = _database_url(name)
    try:
        yield url
    finally:
        db.engine_for(url).dispose()
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_sqlite(template: Path, directory: Path) -> Iterator[str]:
    path = directory / "warehouse.db"
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    try:
        yield url
    finally:
        db.engine_for(url).dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty warehouse of its own for the test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield from _fresh_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        yield from _fresh_postgres(request.getfixturevalue("postgres_template"))


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A migrated, empty PostgreSQL warehouse of its own, for what only PostgreSQL has (locks, roles)."""
    yield from _fresh_postgres(postgres_template)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, to run the migrations from nothing."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        yield url
        db.engine_for(url).dispose()
        return
    require_postgres()
    name = f"metaspend_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    try:
        yield url
    finally:
        db.engine_for(url).dispose()
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: str) -> sa.Engine:
    return db.engine_for(db_url)


@pytest.fixture
def encryption_key() -> str:
    return generate_key()


@pytest.fixture
def fake_token() -> str:
    """A recognisable fake token, unique to the test, to look for in captured output."""
    return "EAAtest" + secrets.token_hex(16)


# The suite's own knobs, read when the conftest is imported; every other META_*/METASPEND_* is a setting.
TEST_KNOBS = ("METASPEND_TEST_",)


@pytest.fixture(autouse=True)
def no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the shell's META_* and METASPEND_* settings: a test's outcome is
    decided by what it sets itself, whatever `META_FETCH_WINDOW_DAYS=...` the developer exported."""
    for name in list(os.environ):
        if name.startswith(("META_", "METASPEND_")) and not name.startswith(TEST_KNOBS):
            monkeypatch.delenv(name)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, db_url: str, encryption_key: str, tmp_path: Path) -> dict[str, str]:
    """A clean environment for the package (see `no_settings_from_the_shell`): this test's warehouse
    and key, nothing inherited."""
    values = {"METASPEND_DATABASE_URL": db_url, "META_TOKEN_ENCRYPTION_KEY": encryption_key}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return values


# --- the run as a whole: slow tests first, no silent skip in CI, tests per backend -------------------

# Tests that start Dagster processes or clusters take tens of seconds each: started first, they
# overlap with the many short tests instead of ending the run alone on one worker.
SLOW_FILES = ("test_production_instance.py", "test_faults.py", "test_dagster_dev.py", "test_demo.py")


def _slowness(item: pytest.Item) -> int:
    if item.path.name in SLOW_FILES:
        return 0
    if item.get_closest_marker("e2e") is not None:
        return 1
    return 2


# scripts/mutation: a mutant's tests stop at the first failure, so there the fastest go first, by the
# durations mutmut measured (its mutmut-stats.json, named by METASPEND_TEST_DURATIONS).
FASTEST_FIRST = os.environ.get("METASPEND_TEST_DURATIONS")
SETUP_RUNS_DAGSTER = {"pipeline", "example"}
# Their assertions hold only when the client's calls are as fast as usual against the sandbox's
# real-time rate limits; mutmut's trampolines on a loaded machine slow them enough to fail them now
# and then, which aborts a mutation run. Under mutation they are skipped (docs/testing.md).
WALL_CLOCK_PACING_TESTS = {
    "test_usage_headers_slow_the_client_before_meta_blocks",
    "test_a_real_rate_limit_throttle_is_waited_out",
    "test_high_app_usage_slows_every_ad_account",
}


@pytest.fixture(autouse=True)
def _no_dagster_runs_under_mutation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under scripts/mutation, a test that runs a Dagster job (`materialize`, `execute_in_process`)
    is skipped when it gets there: one such run costs seconds, a surviving mutant runs every test
    that covers its function, and at two cores a mutant of the fetch or the ROAS took ten minutes.
    The scores are then those of the direct tests, a lower bound (docs/testing.md)."""
    if not FASTEST_FIRST:
        return
    import dagster as dg

    def left_out(*args: object, **kwargs: object) -> None:
        pytest.skip("runs a Dagster job: left out under mutation (docs/testing.md)")

    monkeypatch.setattr(dg.JobDefinition, "execute_in_process", left_out)


def _durations() -> dict[str, float]:
    try:
        return json.loads(Path(FASTEST_FIRST or "").read_text()).get("duration_by_test", {})
    except (OSError, ValueError):
        return {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FASTEST_FIRST:
        for item in items:
            if item.originalname in WALL_CLOCK_PACING_TESTS:
                item.add_marker(
                    pytest.mark.skip(reason="paces against the sandbox's real-time limits: flaky under mutmut")
                )
        durations = _durations()
        # mutmut times a test's call, not its setup: tests whose fixtures run Dagster go last anyway
        items.sort(
            key=lambda item: (bool(SETUP_RUNS_DAGSTER & set(item.fixturenames)), durations.get(item.nodeid, 0.0))
        )
        return
    items.sort(key=_slowness)  # stable: the order inside each group stays the collection order


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Under CI=true a skip is a failure: a test that cannot run there is a broken environment."""
    report = yield
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where every test must run: {reason}"
    return report


def ascii_id(text: str, limit: int = 80) -> str:
    """A test id in printable ASCII without backslashes, at most `limit` characters: scripts/mutation
    gives test ids back on pytest's command line, where an escaped id is not found."""
    return "".join(ch if ch.isascii() and ch.isprintable() and ch != "\\" else f"U+{ord(ch):04X}" for ch in text)[
        :limit
    ]


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Every string parameter's id so: pytest would escape non-ASCII, and a long id helps nobody."""
    if isinstance(val, str) and (len(val) > 80 or ascii_id(val, limit=len(val) * 6) != val):
        return ascii_id(val)
    return None


_BACKEND_ID = re.compile(r"\[(.*)\]$")


def _backend(report: pytest.TestReport) -> str | None:
    if "postgres" in report.keywords:  # the `postgres` marker, set by the db_url parameter too
        return "postgres"
    ids = _BACKEND_ID.search(report.nodeid)
    if ids and "sqlite" in ids.group(1).split("-"):
        return "sqlite"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    """How many tests passed on each backend (works under xdist: the reports reach the controller)."""
    passed = [r for r in terminalreporter.stats.get("passed", []) if r.when == "call"]
    counts = {"sqlite": 0, "postgres": 0}
    for report in passed:
        backend = _backend(report)
        if backend is not None:
            counts[backend] += 1
    terminalreporter.write_sep("-", "tests passed per backend")
    terminalreporter.write_line(
        f"sqlite: {counts['sqlite']}, postgres: {counts['postgres']}, "
        f"backend-independent: {len(passed) - counts['sqlite'] - counts['postgres']}"
    )


# --- the Meta sandbox ----------------------------------------------------------------------------

SANDBOX_SEED = 7


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox on a real loopback socket for the whole session."""
    server = SandboxServer(Sandbox(SANDBOX_SEED)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Sandbox:
    """The session's sandbox, reset: no faults, no request log, default configuration."""
    sandbox_server.sandbox.reset()
    return sandbox_server.sandbox


@pytest.fixture
def api_settings(sandbox_server: SandboxServer) -> MetaApiSettings:
    """Client settings pointed at the sandbox, with waits shortened (never patched)."""
    return MetaApiSettings(
        graph_api_url=sandbox_server.url,
        timeout_seconds=2.0,
        max_retries=5,
        retry_base_delay=0.001,
        retry_max_wait=0.05,
        retry_budget_seconds=10.0,
        page_size=100,
        async_poll_initial=0.02,
        async_poll_max=0.1,
        async_timeout_seconds=10.0,
    )


# --- a stranger's server, to prove that nothing reaches it -------------------------------------


class Listener:
    """A TCP listener on 127.0.0.1 that records every byte anyone sends it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.received: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received.append(conn.recv(65536))

    def assert_records_what_reaches_it(self) -> None:
        """The control: the listener does record what reaches it, so "nothing received" means something."""
        with socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1]))) as conn:
            conn.sendall(b"control")
        for _ in range(50):
            if self.received:
                break
            threading.Event().wait(0.05)
        assert self.received == [b"control"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


# --- the pipeline, through Dagster -----------------------------------------------------------------


@pytest.fixture
def sandbox_endpoint(monkeypatch: pytest.MonkeyPatch, sandbox_server: SandboxServer) -> str:
    """The sandbox as Meta, chosen the only way there is: META_GRAPH_API_URL, with
    METASPEND_ENV=development (outside it only https://graph.facebook.com is accepted). The ECB's
    rates then come from the sandbox too (`settings.fx_rates_url`)."""
    monkeypatch.setenv("METASPEND_ENV", "development")
    monkeypatch.setenv("META_GRAPH_API_URL", sandbox_server.url)
    return sandbox_server.url


class Pipeline:
    """The project's own `meta_spend_job`, pointed at this test's warehouse and (through the
    environment, see `sandbox_endpoint`) the sandbox."""

    def __init__(self, db_url: str, sandbox: Sandbox, sandbox_url: str) -> None:
        import dagster as dg

        from metaspend_pipeline.resources import MetaAdsResource, WarehouseResource

        self.db_url = db_url
        self.sandbox = sandbox
        self.sandbox_url = sandbox_url
        warehouse = WarehouseResource(database_url=db_url)
        self.resources = {
            "warehouse": warehouse,
            "meta": MetaAdsResource(
                warehouse=warehouse,
                token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
                retry_base_delay_seconds=0.001,
                retry_max_wait_seconds=0.02,
                async_poll_initial_seconds=0.01,
            ),
        }

    @property
    def engine(self) -> sa.Engine:
        return db.engine_for(self.db_url)

    def run(
        self,
        start: str,
        end: str | None = None,
        *,
        instance=None,  # type: ignore[no-untyped-def]
        run_config: dict | None = None,
        asset_selection: list | None = None,
    ):  # type: ignore[no-untyped-def]
        """Materialize the pipeline's assets (and their checks) over [start, end] in one run."""
        import dagster as dg

        from metaspend_pipeline.assets import (
            fx_rates_daily,
            lead,
            meta_raw_insights,
            meta_roas,
            meta_spend_daily,
            sale,
        )
        from metaspend_pipeline.checks import (
            attribution_gap,
            every_needed_currency_has_a_rate,
            every_organization_fetched,
            every_organization_written,
            meta_roas_checks,
            meta_spend_anomaly_checks,
            meta_spend_daily_checks,
        )

        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end or start}
        return dg.materialize(
            [
                lead,
                sale,
                meta_raw_insights,
                meta_spend_daily,
                fx_rates_daily,
                meta_roas,
                every_organization_fetched,
                every_organization_written,
                every_needed_currency_has_a_rate,
                meta_spend_daily_checks,
                meta_spend_anomaly_checks,
                meta_roas_checks,
                attribution_gap,
            ],
            selection=asset_selection,
            instance=instance,
            tags=tags,
            run_config=run_config,
            resources=self.resources,
            raise_on_error=False,
        )


@pytest.fixture
def pipeline(env: dict[str, str], sandbox: Sandbox, sandbox_server: SandboxServer, sandbox_endpoint: str) -> Pipeline:
    """A migrated warehouse with the sandbox's organizations connected (tokens encrypted)."""
    from metaspend_pipeline.meta.sandbox.client import connect_sandbox_organizations
    from metaspend_pipeline.tokens import KeyRing

    sandbox.configure(async_job_seconds=0.02)
    connect_sandbox_organizations(db.engine_for(env["METASPEND_DATABASE_URL"]), KeyRing.from_env(), sandbox_server.url)
    return Pipeline(env["METASPEND_DATABASE_URL"], sandbox, sandbox_server.url)
