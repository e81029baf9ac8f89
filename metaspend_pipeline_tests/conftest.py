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
import functools
import inspect
import json
import os
import re
import secrets
import shutil
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
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


# --- the run as a whole: tiers, slow tests first, no silent skip in CI, tests per backend ---------

# Three tiers, set here for every test (never by hand in a test file), so that `scripts/test --fast`
# can run the quick ones while working:
# - `e2e`: starts other processes (the Dagster webserver and daemon, the CLI, another Python): every
#   test under e2e/, and any test whose code starts a process;
# - `dagster`: runs a Dagster job in the test's process (`materialize`, `execute_in_process`, the
#   `pipeline` fixture's runs);
# - fast: everything else, plain code against the real PostgreSQL, SQLite and sandbox.
# Under METASPEND_TEST_TIER=fast (scripts/test --fast) a test of the fast tier that starts a Dagster run
# or a process anyway fails, naming the rule to add here: the fast tier cannot silently grow slow.
E2E_FOLDER = "e2e"
DAGSTER_FIXTURES = {"pipeline", "example"}  # fixtures whose setup runs Dagster jobs
DAGSTER_CALLS = ("materialize(", "execute_in_process(", ".run(", "run_roas(")
PROCESS_FIXTURES = {"scram_cluster"}  # fixtures that start processes
PROCESS_CALLS = (
    "subprocess.",
    "Popen(",
    "_dagster_processes",
    "sys.executable",
    "console_script(",
    "webserver_and_daemon(",
    "dagster_dev(",
    "dg_dev(",
    "Processes(",
)
FAST_ONLY = os.environ.get("METASPEND_TEST_TIER") == "fast"
# A Dagster or end-to-end test parametrized over both warehouses by the `db_url` fixture runs on
# PostgreSQL only: what differs between the backends is the storage layer, which the fast tier tests
# on both, while a Dagster run costs seconds whichever warehouse it writes to. A test that needs the
# embedded default too says so with `@pytest.mark.both_backends` (the range run against the sandbox's
# truth, the concurrent fetch; the demo runs on SQLite anyway), and one parametrized explicitly
# (`parametrize("db_url", [...], indirect=True)`) keeps what it asks for.
# METASPEND_TEST_BOTH_BACKENDS=1 runs every one of them on both.
BOTH_BACKENDS_ALWAYS = os.environ.get("METASPEND_TEST_BOTH_BACKENDS", "").lower() in {"1", "true", "yes"}


def _runs(source: str, calls: Iterable[str]) -> bool:
    return any(call in source for call in calls)


@functools.cache
def _module_helpers(module: ModuleType) -> dict[str, set[str]]:
    """Per tier, the module's functions and fixtures that start a process or a Dagster run, directly or
    through another of them: a test calling one (or using one as a fixture) is in that tier too."""
    sources = {}
    for name, value in vars(module).items():
        function = getattr(value, "__wrapped__", value)  # a fixture's function
        if inspect.isfunction(function) and not name.startswith("test_"):
            with contextlib.suppress(OSError, TypeError):
                sources[name] = inspect.getsource(function)
    found: dict[str, set[str]] = {}
    for tier, calls in (("e2e", PROCESS_CALLS), ("dagster", DAGSTER_CALLS)):
        names = {name for name, source in sources.items() if _runs(source, calls)}
        while True:
            more = {n for n, src in sources.items() if n not in names and _runs(src, [f"{m}(" for m in names])}
            more |= {n for n, src in sources.items() if n not in names and names & set(_parameters(src))}
            if not more:
                break
            names |= more
        found[tier] = names
    return found


def _parameters(source: str) -> list[str]:
    head = source.split("(", 1)[1].split(")", 1)[0] if "(" in source else ""
    return [part.split(":")[0].strip() for part in head.split(",")]


def _tier(item: pytest.Item) -> str | None:
    relative = item.path.relative_to(Path(__file__).parent)
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    fixtures = set(getattr(item, "fixturenames", ()))
    helpers = _module_helpers(item.module) if getattr(item, "module", None) is not None else {}
    for tier, calls, tier_fixtures in (
        ("e2e", PROCESS_CALLS, PROCESS_FIXTURES),
        ("dagster", DAGSTER_CALLS, DAGSTER_FIXTURES),
    ):
        names = helpers.get(tier, set())
        if (
            (tier == "e2e" and relative.parts[0] == E2E_FOLDER)
            or (tier_fixtures | names) & fixtures
            or _runs(source, [*calls, *(f"{n}(" for n in names)])
        ):
            return tier
    return None


@pytest.fixture(autouse=True)
def _fast_tier_stays_fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under METASPEND_TEST_TIER=fast, starting a Dagster run or a process fails the test: its tier rule
    above is missing."""
    if not FAST_ONLY:
        return
    import subprocess

    import dagster as dg

    def refuse(what: str) -> Any:
        def refused(*args: object, **kwargs: object) -> None:
            pytest.fail(
                f"{request.node.nodeid} {what} but is in the fast tier: add the call or fixture that does it "
                "to DAGSTER_CALLS / DAGSTER_FIXTURES / PROCESS_CALLS / PROCESS_FIXTURES in conftest.py"
            )

        return refused

    monkeypatch.setattr(dg.JobDefinition, "execute_in_process", refuse("runs a Dagster job"))
    monkeypatch.setattr(subprocess, "Popen", refuse("starts a process"))


# Tests that start Dagster processes or clusters take tens of seconds each: started first, they
# overlap with the many short tests instead of ending the run alone on one worker.
def _slowness(item: pytest.Item) -> int:
    if item.get_closest_marker("e2e") is not None:
        return 0
    if item.get_closest_marker("dagster") is not None:
        return 1
    return 2


# scripts/mutation: a mutant's tests stop at the first failure, so there the fastest go first, by the
# durations mutmut measured (its mutmut-stats.json, named by METASPEND_TEST_DURATIONS). Mutation runs
# the fast tier only (pyproject's [tool.mutmut]): a Dagster run costs seconds, and a surviving mutant
# runs every test that covers its function (docs/development.md).
FASTEST_FIRST = os.environ.get("METASPEND_TEST_DURATIONS")
# Their assertions hold only when the client's calls are as fast as usual against the sandbox's
# real-time rate limits; mutmut's trampolines on a loaded machine slow them enough to fail them now
# and then, which aborts a mutation run. Under mutation they are skipped (docs/development.md).
WALL_CLOCK_PACING_TESTS = {
    "test_usage_headers_slow_the_client_before_meta_blocks",
    "test_a_real_rate_limit_throttle_is_waited_out",
    "test_high_app_usage_slows_every_ad_account",
}


def _durations() -> dict[str, float]:
    try:
        return json.loads(Path(FASTEST_FIRST or "").read_text()).get("duration_by_test", {})
    except (OSError, ValueError):
        return {}


def _one_backend_is_enough(item: pytest.Item, tier: str | None) -> bool:
    """True for the SQLite instance of a Dagster or end-to-end test that the `db_url` fixture
    parametrized over both backends (see BOTH_BACKENDS_ALWAYS above)."""
    callspec = getattr(item, "callspec", None)
    if BOTH_BACKENDS_ALWAYS or tier is None or callspec is None or callspec.params.get("db_url") != "sqlite":
        return False
    if item.get_closest_marker("both_backends") is not None:
        return False
    return not any("db_url" in str(marker.args[0]) for marker in item.iter_markers("parametrize") if marker.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        tier = _tier(item)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        (deselected if _one_backend_is_enough(item, tier) else kept).append(item)
    if deselected:
        items[:] = kept
        config.hook.pytest_deselected(items=deselected)
    if FASTEST_FIRST:
        for item in items:
            if item.originalname in WALL_CLOCK_PACING_TESTS:
                item.add_marker(
                    pytest.mark.skip(reason="paces against the sandbox's real-time limits: flaky under mutmut")
                )
        durations = _durations()
        items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
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

        from metaspend_pipeline.defs.common.resources import MetaAdsResource, WarehouseResource

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
        extra: Sequence[object] = (),
    ):  # type: ignore[no-untyped-def]
        """Materialize the pipeline's assets (and their checks, and `extra` definitions) over [start, end]
        in one run."""
        import dagster as dg

        from metaspend_pipeline.defs.fx.assets import fx_rates_daily
        from metaspend_pipeline.defs.fx.checks import every_needed_currency_has_a_rate
        from metaspend_pipeline.defs.meta_spend.assets import meta_raw_insights, meta_spend_daily
        from metaspend_pipeline.defs.meta_spend.checks import (
            every_organization_fetched,
            meta_spend_anomaly_checks,
            meta_spend_daily_checks,
            meta_spend_daily_written,
        )
        from metaspend_pipeline.defs.product.assets import table_specs
        from metaspend_pipeline.defs.roas.assets import meta_roas
        from metaspend_pipeline.defs.roas.checks import attribution_gap, meta_roas_checks, meta_roas_written

        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end or start}
        return dg.materialize(
            [
                *table_specs(),
                meta_raw_insights,
                meta_spend_daily,
                fx_rates_daily,
                meta_roas,
                every_organization_fetched,
                meta_spend_daily_written,
                meta_roas_written,
                every_needed_currency_has_a_rate,
                meta_spend_daily_checks,
                meta_spend_anomaly_checks,
                meta_roas_checks,
                attribution_gap,
                *extra,
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
    from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
    from metaspend_pipeline.tokens import KeyRing

    sandbox.configure(async_job_seconds=0.02)
    connect_sandbox_organizations(db.engine_for(env["METASPEND_DATABASE_URL"]), KeyRing.from_env(), sandbox_server.url)
    return Pipeline(env["METASPEND_DATABASE_URL"], sandbox, sandbox_server.url)
