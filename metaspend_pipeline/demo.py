"""`metaspend demo`: the README's main command, the real pipeline on the embedded default.

It starts the Meta sandbox (which is the ECB too: `fx_rates_daily` reads its rates, nothing goes
to the internet), connects its demo organizations (tokens encrypted), seeds leads and sales in
the product's tables, materializes the last 14 days through Dagster in a local instance (so
`dagster dev` shows the run afterwards), and prints the ROAS report, by account currency and in
the organization's reporting currency.

Everything it creates lives under `.metaspend/` in the working directory: the SQLite warehouse,
the Dagster instance, and `demo.env` (the demo's key and settings; `source` it in a shell). It
touches nothing else: its own settings replace DAGSTER_HOME, METASPEND_* and META_* from the
environment for its run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.settings import Settings
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
    values.setdefault("META_GRAPH_API_URL", f"http://127.0.0.1:{SANDBOX_PORT}")
    values.setdefault("META_ASYNC_POLL_INITIAL_SECONDS", "0.2")  # the sandbox's report runs take 0.3 s
    values["METASPEND_DATABASE_URL"] = f"sqlite:///{root / 'metaspend.db'}"
    values["DAGSTER_HOME"] = str(root / "dagster")
    values["METASPEND_ENV"] = "development"  # the sandbox as Meta
    directory.mkdir(parents=True, exist_ok=True)
    activate = Path(sys.prefix) / "bin" / "activate"  # the venv the project runs in: its commands on PATH
    source = f". '{activate}'\n" if sys.prefix != sys.base_prefix and activate.exists() else ""
    path.write_text(source + "".join(f"export {k}='{v}'\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
    return values


def use_demo_env(values: dict[str, str]) -> None:
    """The demo's settings replace the environment's for this process: a DAGSTER_HOME, warehouse,
    key or app secret of another installation must not be read, let alone written to."""
    for name in [n for n in os.environ if n.startswith(("META_", "METASPEND_")) or n == "DAGSTER_HOME"]:
        del os.environ[name]
    os.environ.update(values)


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


def run(echo: Echo = print) -> None:
    started = time.monotonic()
    # Dagster's notices about beta and superseded APIs are for this project's developers, not the demo
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", module="metaspend_pipeline")
    use_demo_env(load_demo_env())
    settings = Settings.from_env()
    _prepare_dagster_home(Path(os.environ["DAGSTER_HOME"]))

    from metaspend_pipeline.cli.sandbox import connect_sandbox_organizations
    from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
    from metaspend_pipeline.tokens import KeyRing

    echo(f"==> warehouse {db.display_url(settings.database_url)}")
    db.upgrade(settings.database_url)
    engine = db.engine_for(settings.database_url)

    port = SANDBOX_PORT if _free(SANDBOX_PORT) else 0
    sandbox = Sandbox(SANDBOX_SEED)
    server = SandboxServer(sandbox, port=port).start()
    os.environ["META_GRAPH_API_URL"] = server.url
    try:
        echo(f"==> Meta sandbox on {server.url}")
        connected = connect_sandbox_organizations(engine, KeyRing.from_settings(settings), server.url)
        for organization_id, accounts in connected.items():
            echo(f"    connected {organization_id}: {', '.join(accounts)} (token encrypted)")

        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        since = yesterday - dt.timedelta(days=DAYS - 1)
        n_leads, n_sales = seed_leads_and_sales(engine, sandbox.world, since, yesterday)
        echo(f"==> seeded {n_leads} leads and {n_sales} sales in the product's lead and sale tables")

        echo(f"==> materializing {since}..{yesterday} through Dagster (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
        runs = _launch(since, yesterday)
    finally:
        server.stop()

    failed = False
    for run, evaluations in runs:
        echo(f"    run {run.run_id} of {run.job_name}: {run.status.value.lower()}")
        failed = failed or run.status.value != "SUCCESS"
        for evaluation in evaluations:
            warning = evaluation.severity.value == "WARN"  # AssetCheckSeverity.WARN
            state = "passed" if evaluation.passed else ("warning" if warning else "FAILED")
            echo(f"    check {evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {state}")
            if warning and not evaluation.passed and evaluation.description:
                for line in evaluation.description.splitlines()[:4]:
                    echo(f"      {line}")
    if failed:
        raise SystemExit("a demo run failed; see the messages above and the run in the Dagster UI")
    _print_report(engine, since, yesterday, echo)
    echo(f"==> done in {time.monotonic() - started:.0f}s")
    echo(f"    look around in the Dagster UI:  source {DEMO_ENV}")
    echo("                                    metaspend sandbox serve &   # Meta, for runs you launch there")
    echo("                                    dagster dev")


LOCATION = "metaspend_pipeline.definitions"


def _launch(since: dt.date, until: dt.date) -> list[tuple[Any, list[Any]]]:
    """The product's tables observed, then `meta_spend_job` over the range, each run created from the
    code location and launched with the instance's run launcher, as `dagster job launch` and the UI
    do: the runs are listed under their jobs in the UI and can be re-executed there."""
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    range_tags = {
        "dagster/asset_partition_range_start": since.isoformat(),
        "dagster/asset_partition_range_end": until.isoformat(),
        "metaspend/purpose": "demo",
    }
    target = ModuleTarget(module_name=LOCATION, attribute=None, working_directory=os.getcwd(), location_name=LOCATION)
    with dg.DagsterInstance.get() as instance, WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        return [
            _launch_and_wait(instance, workspace, "product_tables_observe_job", {"metaspend/purpose": "demo"}),
            _launch_and_wait(instance, workspace, "meta_spend_job", range_tags),
        ]


def _launch_and_wait(instance: Any, workspace: Any, job_name: str, tags: dict[str, str]) -> tuple[Any, list[Any]]:
    """One run of `job_name` launched through the instance; the finished run and its check evaluations."""
    import dagster as dg
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location(LOCATION)
    [repository] = location.get_repositories().values()
    job = location.get_job(
        JobSubsetSelector(location_name=LOCATION, repository_name=repository.name, job_name=job_name, op_selection=None)
    )
    plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config={},
        resolved_op_selection=None,
        step_keys_to_execute=None,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=tags,
        job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=job.parent_job_snapshot,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    instance.launch_run(run.run_id, workspace)
    while not (run := instance.get_run_by_id(run.run_id)).is_finished:
        time.sleep(0.5)
    evaluations = [
        record.get_dagster_event().event_specific_data
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    return run, evaluations


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
