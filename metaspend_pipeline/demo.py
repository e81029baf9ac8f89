"""`metaspend demo`: the README's main command, the real pipeline on the embedded default.

It starts the Meta sandbox (which is the ECB too: `fx_rates_daily` reads its rates, nothing goes
to the internet), connects its demo organizations (tokens encrypted), seeds leads and sales in
the product's tables, materializes the last 14 days through Dagster in a local instance (so
`dg dev` shows the runs afterwards): the spend, its breakdowns and ROAS in one run of
`meta_spend_job`, then the month's reach in one run of `meta_reach_monthly_job`. It prints the
ROAS report, by account currency and in the organization's reporting currency, and what
`metaspend breakdown` and `metaspend reach` show.

Everything it creates lives under `.metaspend/` in the working directory: the SQLite warehouse,
the Dagster instance, and `demo.env` (the demo's key and settings; `source` it in a shell). It
touches nothing else: its own settings replace DAGSTER_HOME, METASPEND_* and META_* from the
environment for its run (all but META_API_VERSION, the version to try it with). Its sandbox treats
Marketing API versions as Meta does today: `META_API_VERSION=v24.0 metaspend demo` shows Meta's
warning in the run's log and in the check meta_api_version_current.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from metaspend_pipeline.cli.progress import CheckVerdict, RunProgress
from metaspend_pipeline.meta.versions import as_meta_serves_them
from metaspend_pipeline.safe_text import safe_text
from metaspend_pipeline.settings import MetaApiSettings, Settings
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import generate_key

DEMO_DIR = Path(".metaspend")
DEMO_ENV = DEMO_DIR / "demo.env"
SANDBOX_PORT = 8765
DAYS = 14
SANDBOX_SEED = 0
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"

Echo = Callable[[str], None]


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _sandbox_url(previous: str | None) -> str:
    """Where this demo's sandbox listens: demo.env's address while its port is free (so that
    `metaspend sandbox serve` after `source .metaspend/demo.env` serves the same one), else a free port."""
    port = urllib.parse.urlsplit(previous).port if previous else SANDBOX_PORT
    if port is None or not _free(port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def load_demo_env(directory: Path = DEMO_DIR) -> dict[str, str]:
    """The demo's settings file, created the first time with a new key; kept across runs so the
    tokens stored by an earlier demo still decrypt. Where it writes is always `directory` itself,
    whatever the file (or the environment) says."""
    path = directory / DEMO_ENV.name
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                name, _, value = line[len("export ") :].partition("=")
                values[name] = value.strip("'\"")
    root = directory.resolve()
    values.setdefault("META_TOKEN_ENCRYPTION_KEY", generate_key())
    values["META_GRAPH_API_URL"] = _sandbox_url(values.get("META_GRAPH_API_URL"))
    values.setdefault("META_ASYNC_POLL_INITIAL_SECONDS", "0.05")  # the demo sandbox's report runs take 50 ms
    values["METASPEND_DATABASE_URL"] = f"sqlite:///{root / 'metaspend.db'}"
    values["DAGSTER_HOME"] = str(root / "dagster")
    values["METASPEND_ENV"] = "development"  # the sandbox as Meta
    directory.mkdir(parents=True, exist_ok=True)
    activate = Path(sys.prefix) / "bin" / "activate"  # the venv the project runs in: its commands on PATH
    source = f". '{activate}'\n" if sys.prefix != sys.base_prefix and activate.exists() else ""
    path.write_text(source + "".join(f"export {k}='{v}'\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
    return values


# Settings of the shell the demo keeps: META_API_VERSION says which Marketing API version to try
# the demo with (`META_API_VERSION=v24.0 metaspend demo`); it sends nothing anywhere else.
KEPT_SETTINGS = ("META_API_VERSION",)


def use_demo_env(values: dict[str, str]) -> None:
    """The demo's settings replace the environment's for this process: a DAGSTER_HOME, warehouse,
    key or app secret of another installation must not be read, let alone written to. Only
    KEPT_SETTINGS pass through."""
    kept = {n: os.environ[n] for n in KEPT_SETTINGS if os.environ.get(n)}
    for name in [n for n in os.environ if n.startswith(("META_", "METASPEND_")) or n == "DAGSTER_HOME"]:
        del os.environ[name]
    os.environ.update(values)
    os.environ.update(kept)


def _prepare_dagster_home(home: Path) -> None:
    if not home.resolve().is_relative_to(DEMO_DIR.resolve()):
        raise RuntimeError(f"the demo's Dagster instance must live under {DEMO_DIR}/, not in {home}")
    home.mkdir(parents=True, exist_ok=True)
    if REPO_DAGSTER_YAML.exists():
        shutil.copyfile(REPO_DAGSTER_YAML, home / "dagster.yaml")
    elif not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def seed_leads_and_sales(engine: sa.Engine, world: object, since: dt.date, until: dt.date) -> tuple[int, int]:
    """Deterministic leads and sales for the demo organizations: a few leads per ad per day, about
    one in five sold, amounts in the ad account's currency. Replaces the demo's earlier rows."""
    from metaspend_pipeline.sandbox.world import World
    from metaspend_pipeline.storage.schema import lead, sale

    assert isinstance(world, World)
    leads, sales = [], []
    for org in world.organizations:
        for account_id in org.ad_accounts:
            account = world.accounts[account_id]
            # the sandbox's amounts in a zero-decimal currency (JPY) are 10,000 times its dollar
            # amounts (spend and Meta's purchase values alike): sales follow, so ROAS is alike
            scale = 10_000 if account.minor_digits == 0 else 1
            for ad in account.ads:
                day = since
                while day <= until:
                    h = int(hashlib.sha256(f"{ad.id}:{day}".encode()).hexdigest()[:12], 16)
                    for n in range(h % 3):
                        lead_id = f"demo-{ad.id}-{day:%Y%m%d}-{n}"
                        created = dt.datetime.combine(day, dt.time(12 + n), dt.UTC)
                        leads.append(
                            {
                                "id": lead_id,
                                "organization_id": org.organization_id,
                                "created_at": created,
                                "campaign_id": ad.campaign.id,
                                "adset_id": ad.adset.id,
                                "ad_id": ad.id,
                            }
                        )
                        if (h >> (8 + n)) % 5 == 0:
                            amount = Decimal(200 + (h >> 20) % 1800) * scale
                            sales.append(
                                {
                                    "id": f"{lead_id}-sale",
                                    "organization_id": org.organization_id,
                                    "lead_id": lead_id,
                                    "amount": amount,
                                    "currency": account.currency,
                                    "closed_at": created + dt.timedelta(days=2),
                                }
                            )
                    day += dt.timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(sale.delete().where(sale.c.id.like("demo-%")))
        conn.execute(lead.delete().where(lead.c.id.like("demo-%")))
        if leads:
            conn.execute(lead.insert(), leads)
        if sales:
            conn.execute(sale.insert(), sales)
    return len(leads), len(sales)


def _quiet() -> None:
    """Dagster's notices about beta and superseded APIs are for this project's developers, not the demo."""
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", module="metaspend_pipeline")
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")


def run(echo: Echo = print) -> None:
    started = time.monotonic()
    _quiet()
    use_demo_env(load_demo_env())
    settings = Settings.from_env()
    _prepare_dagster_home(Path(os.environ["DAGSTER_HOME"]))

    from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
    from metaspend_pipeline.sandbox.server import Sandbox, SandboxConfig, SandboxServer
    from metaspend_pipeline.tokens import KeyRing

    echo(f"==> warehouse {db.display_url(settings.database_url)}")
    db.upgrade(settings.database_url)
    engine = db.engine_for(settings.database_url)

    port = urllib.parse.urlsplit(os.environ["META_GRAPH_API_URL"]).port or SANDBOX_PORT
    # report runs finish in 50 ms (Meta's take seconds): the demo shows the async path without waiting on it;
    # versions are treated as Meta treats them today (those past their expiry answered with a warning)
    served = as_meta_serves_them(dt.datetime.now(dt.UTC).date())
    config = SandboxConfig(
        async_job_seconds=0.05,
        expired_versions=served.expired,
        oldest_version=served.oldest,
        latest_version=served.latest,
    )
    sandbox = Sandbox(SANDBOX_SEED, config)
    server = SandboxServer(sandbox, port=port).start()
    os.environ["META_GRAPH_API_URL"] = server.url
    try:
        version = MetaApiSettings.from_env().api_version
        expired = f"; it answers {', '.join(served.expired)} as expired, as Meta does" if served.expired else ""
        echo(f"==> Meta sandbox on {server.url}, Marketing API {version}{expired}")
        connected = connect_sandbox_organizations(engine, KeyRing.from_settings(settings), server.url)
        for organization_id, accounts in connected.items():
            echo(f"    connected {organization_id}: {', '.join(accounts)} (token encrypted)")

        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        since = yesterday - dt.timedelta(days=DAYS - 1)
        n_leads, n_sales = seed_leads_and_sales(engine, sandbox.world, since, yesterday)
        echo(f"==> seeded {n_leads} leads and {n_sales} sales in the product's lead and sale tables")

        echo(f"==> materializing {since}..{yesterday}: one run of meta_spend_job (Dagster's log: {DAGSTER_LOG})")
        _finish(launch("meta_spend_job", _range_tags(since, yesterday), echo), echo)
        month = yesterday.replace(day=1)
        echo(f"==> reach of the month of {month:%Y-%m} up to {yesterday}: one run of meta_reach_monthly_job")
        _finish(run_reach(month, echo), echo)
    finally:
        server.stop()

    _print_report(engine, since, yesterday, echo)
    _print_audience(engine, since, yesterday, echo)
    echo(f"==> done in {time.monotonic() - started:.0f}s")
    for line in LOOK_AROUND:
        echo(line)


# What the README's quick start says to do next, word for word.
LOOK_AROUND = (
    "    look around in the Dagster UI:  source .metaspend/demo.env",
    "                                    metaspend sandbox serve &   # Meta, for the runs you launch there",
    "                                    dg dev                      # http://127.0.0.1:3000",
)
LOCATION = "metaspend_pipeline"  # the code location's name everywhere (pyproject.toml, workspace.yaml)
DAGSTER_LOG = DEMO_DIR / "dagster.log"


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str  # Dagster's run status: SUCCESS, FAILURE, ...
    checks: list[CheckVerdict]


def _range_tags(since: dt.date, until: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": since.isoformat(),
        "dagster/asset_partition_range_end": until.isoformat(),
    }


def _finish(outcome: Outcome, echo: Echo) -> None:
    echo(f"    run {outcome.run_id}: {outcome.status.lower()}")
    for verdict in outcome.checks:
        echo(f"    check {verdict.asset}.{verdict.check}: {verdict.state}")
        if not verdict.passed:
            for line in verdict.description.splitlines()[:4]:
                echo(f"      {safe_text(line)}")
    if outcome.status != "SUCCESS":
        raise SystemExit(f"the demo's run failed; see the lines above, {DAGSTER_LOG}, and the run in the Dagster UI")


def run_reach(month: dt.date, echo: Echo) -> Outcome:
    """`meta_reach_monthly_job` for `month`, run in this process (`execute_in_process`, as `metaspend
    backfill --wait` runs): recorded in the instance, so the UI shows the run and the asset's
    materialization, but a run without a code location, which the UI cannot re-execute (launch one from
    the job's page instead). A second `dagster job launch` would cost the demo 5 to 7 s of starting
    Dagster twice more; this costs under 2."""
    import dagster as dg

    from metaspend_pipeline.cli.backfill import run_in_process

    tags = {"dagster/partition": month.isoformat(), "metaspend/purpose": "demo"}
    with dg.DagsterInstance.get() as instance:
        success, run_id, checks = run_in_process(
            instance, "meta_reach_monthly_job", tags, {}, lambda line: echo("    " + line)
        )
    return Outcome(run_id, "SUCCESS" if success else "FAILURE", checks)


def launch(job: str, partition_tags: dict[str, str], echo: Echo) -> Outcome:
    """One run of `job` over a partition (range), launched the way the UI launches one: created from
    the code location `metaspend_pipeline` (`dagster job launch`, a public command) and started by the
    instance's run launcher, so the UI that `dg dev` starts lists it under its job and can re-execute it.
    Its steps run in the run's process (defs/common/execution.py); the progress lines come from
    the `metaspend_progress` logger, Dagster's own log goes to DAGSTER_LOG."""
    import dagster as dg

    from metaspend_pipeline.defs.common.progress import run_config

    run_id = str(uuid.uuid4())
    progress_file = DEMO_DIR / "progress" / f"{run_id}.jsonl"
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    workspace = DEMO_DIR / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: metaspend_pipeline.definitions\n"
        f"      working_directory: {Path.cwd()}\n"
        f"      location_name: {LOCATION}\n"
    )
    tags = {**partition_tags, "metaspend/purpose": "demo"}
    config = run_config(progress_file.resolve(), console_level="DEBUG")
    command = [
        str(Path(sys.executable).with_name("dagster")),
        *("job", "launch", "-w", str(workspace), "-j", job, "--run-id", run_id),
        *("--tags", json.dumps(tags), "--config-json", json.dumps(config)),
    ]
    follower = RunProgress(progress_file, lambda line: echo("    " + line), started=time.time())
    with DAGSTER_LOG.open("a") as log:
        launched = subprocess.run(command, stdout=log, stderr=log, check=False)  # noqa: S603 - our own command line
    if launched.returncode != 0:
        raise SystemExit(f"`dagster job launch` failed (exit code {launched.returncode}); see {DAGSTER_LOG}")
    with dg.DagsterInstance.get() as instance:

        def finished() -> bool:
            run = instance.get_run_by_id(run_id)
            return run is not None and run.is_finished

        follower.follow(finished)
        run = instance.get_run_by_id(run_id)
    return Outcome(run_id, run.status.value if run else "NOT_FOUND", follower.checks)


def _print_report(engine: sa.Engine, since: dt.date, until: dt.date, echo: Echo) -> None:
    """demo-org-1 spends in USD and EUR: by account currency, then all in its reporting currency."""
    from metaspend_pipeline import report
    from metaspend_pipeline.storage.accounts import reporting_currency

    with engine.connect() as conn:
        items = report.roas_report(conn, "demo-org-1", "campaign", since, until)
        converted = report.roas_report(conn, "demo-org-1", "campaign", since, until, currency="reporting")
        reporting = reporting_currency(conn, "demo-org-1")
    headers, rows = report.to_rows(items, "campaign")
    echo(f"==> ROAS of demo-org-1 by campaign, {since}..{until} (metaspend roas --org demo-org-1 ...)")
    for line in report.format_table(headers, rows).splitlines():
        echo("    " + line)
    headers, rows = report.to_rows(converted, "campaign")
    echo(
        f"==> the same in demo-org-1's reporting currency, {reporting}, at the ECB's rate of each day "
        "(fx_rates_daily; metaspend roas --org demo-org-1 --currency reporting ...)"
    )
    for line in report.format_table(headers, rows).splitlines():
        echo("    " + line)


SHOWN_ROWS = 6


def _print_audience(engine: sa.Engine, since: dt.date, until: dt.date, echo: Echo) -> None:
    """What `metaspend breakdown` and `metaspend reach` print for demo-org-1 (the first rows)."""
    from metaspend_pipeline import audience, report

    month = until.replace(day=1)
    with engine.connect() as conn:
        ages = audience.breakdown_report(conn, "demo-org-1", "age_gender", "campaign", since, until)
        reach = audience.reach_report(conn, "demo-org-1", "month", "campaign", month, month)
    shown = [
        (
            f"spend of demo-org-1 by campaign, age and gender, {since}..{until} "
            f"(metaspend breakdown --org demo-org-1 --by age_gender --from {since} --to {until})",
            ages,
            audience.breakdown_headers("age_gender", "campaign"),
        ),
        (
            f"reach of demo-org-1 by campaign in {month:%Y-%m}, as Meta counts it for the month, never a sum "
            f"of days (metaspend reach --org demo-org-1 --period month)",
            reach,
            audience.reach_headers("month", "campaign"),
        ),
    ]
    for title, items, headers in shown:
        echo(f"==> {title}")
        columns, rows = report.items_to_rows(items[:SHOWN_ROWS], headers)
        for line in report.format_table(columns, rows).splitlines():
            echo("    " + line)
        if len(items) > SHOWN_ROWS:
            echo(f"    ... and {len(items) - SHOWN_ROWS} more rows")
