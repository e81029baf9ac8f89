"""The Definitions object, wired as the issues' contract says."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from metaspend_pipeline.definitions import build_definitions, load
from metaspend_pipeline.settings import Settings
from metaspend_pipeline_tests.dates import TODAY, iso

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ["meta_raw_insights", "meta_spend_daily", "meta_roas_by_campaign", "meta_roas_by_adset", "meta_roas_by_ad"]
BREAKDOWNS = ["meta_spend_by_age_gender", "meta_spend_by_country", "meta_spend_by_placement"]
REACH = ["meta_reach_weekly", "meta_reach_monthly"]
CHECKS = {
    ("meta_raw_insights", "every_organization_fetched"),
    ("meta_raw_insights", "meta_api_version_current"),
    ("fx_rates_daily", "every_needed_currency_has_a_rate"),
    ("meta_spend_daily", "every_organization_written"),
    ("meta_spend_daily", "levels_reconcile"),
    ("meta_spend_daily", "keys_match_level"),
    ("meta_spend_daily", "one_currency_per_ad_account"),
    ("meta_spend_daily", "yesterday_loaded"),
    ("meta_roas_by_campaign", "attribution_gap"),
    ("meta_roas_by_campaign", "meta_purchases_reconcile_across_levels"),
    ("meta_spend_daily", "no_stopped_spending"),
    ("meta_spend_daily", "spend_near_trailing_median"),
    ("meta_spend_daily", "every_ad_account_loaded"),
    *(
        (f"meta_roas_by_{g}", name)
        for g in ("campaign", "adset", "ad")
        for name in ("every_organization_written", "no_currency_mismatch")
    ),
    *((name, check) for name in BREAKDOWNS for check in ("adds_up_to_meta_spend_daily", "every_organization_written")),
    *(
        (name, check)
        for name in REACH
        for check in ("reach_not_above_impressions", "adds_up_to_meta_spend_daily", "every_organization_written")
    ),
}


def test_definitions_load_with_the_contract_names(env: dict[str, str]) -> None:
    definitions = load()
    graph = definitions.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        *ASSETS,
        *BREAKDOWNS,
        *REACH,
        "fx_rates_daily",
        "lead",
        "sale",
    }
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == CHECKS
    repository = definitions.get_repository_def()
    assert {j.name for j in repository.get_all_jobs() if not j.name.startswith("__")} == {
        "meta_spend_job",
        "meta_spend_checks_job",
        "meta_token_refresh_job",
        "product_tables_observe_job",
        "meta_reach_weekly_job",
        "meta_reach_monthly_job",
    }
    assert {s.name for s in repository.schedule_defs} == {
        "meta_spend_schedule",
        "meta_token_refresh_schedule",
        "meta_reach_weekly_schedule",
        "meta_reach_monthly_schedule",
    }
    assert {s.name for s in repository.sensor_defs} == set()  # freshness is a policy, evaluated by the daemon
    assert set(definitions.resources or {}) == {"warehouse", "meta"}


def test_the_five_assets_share_partitions_and_run_ranges_in_one_run(env: dict[str, str]) -> None:
    graph = load().resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("meta_spend_daily")).partitions_def
    for name in ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == partitions, name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert node.group_name == "meta_spend"
        assert node.description
        assert node.owners == ["team:data-engineering"], name
        assert node.code_version, name
        assert node.tags.get("source") == "meta", name
    assert not graph.get(dg.AssetKey("lead")).is_materializable  # the product's table: external
    roas = graph.get(dg.AssetKey("meta_roas_by_ad"))
    assert {k.to_user_string() for k in roas.parent_keys} == {"meta_spend_daily", "fx_rates_daily", "lead", "sale"}
    rates = graph.get(dg.AssetKey("fx_rates_daily"))  # the ECB's: another group and source, the same partitions
    assert rates.partitions_def == partitions
    assert rates.backfill_policy == dg.BackfillPolicy.single_run()
    assert (rates.group_name, rates.tags.get("source"), rates.owners) == (
        "exchange_rates",
        "ecb",
        ["team:data-engineering"],
    )


def test_breakdowns_share_the_daily_partitions_and_reach_has_weeks_and_months(env: dict[str, str]) -> None:
    graph = load().resolve_asset_graph()
    days = graph.get(dg.AssetKey("meta_spend_daily")).partitions_def
    for name in BREAKDOWNS:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == days, name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert {k.to_user_string() for k in node.parent_keys} == {"meta_spend_daily"}, name
        assert (node.group_name, node.tags.get("source")) == ("meta_breakdowns", "meta"), name
    weeks = graph.get(dg.AssetKey("meta_reach_weekly")).partitions_def
    months = graph.get(dg.AssetKey("meta_reach_monthly")).partitions_def
    assert isinstance(weeks, dg.WeeklyPartitionsDefinition) and isinstance(months, dg.MonthlyPartitionsDefinition)
    # the first week is the Monday on or before META_SPEND_START_DATE (2024-01-01, a Monday); the current one is last
    assert (weeks.get_first_partition_key(), months.get_first_partition_key()) == ("2024-01-01", "2024-01-01")
    today = dt.datetime.now(dt.UTC).date()
    assert weeks.get_last_partition_key() == (today - dt.timedelta(days=today.weekday())).isoformat()
    assert months.get_last_partition_key() == today.replace(day=1).isoformat()
    for name in REACH:
        assert graph.get(dg.AssetKey(name)).group_name == "meta_reach"


def test_meta_fetches_are_bounded_by_the_meta_api_pool(env: dict[str, str]) -> None:
    definitions = load()
    for name in ("meta_raw_insights", "meta_spend_by_country", "meta_reach_weekly", "meta_reach_monthly"):
        assert definitions.resolve_assets_def(name).node_def.pool == "meta_api", name


def test_the_partitions_end_yesterday(env: dict[str, str]) -> None:
    import datetime as dt

    partitions = load().resolve_assets_def("meta_spend_daily").partitions_def
    assert partitions.get_last_partition_key() == (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert partitions.get_first_partition_key() == "2024-01-01"


def test_settings_are_read_when_the_definitions_are_built(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not when the modules were imported (above, before this test set anything)."""
    import datetime as dt

    start = iso(1)  # before the tick's range, after the default first partition, on any clock
    monkeypatch.setenv("META_SPEND_START_DATE", start)
    monkeypatch.setenv("META_SPEND_LOOKBACK_DAYS", "5")
    monkeypatch.setenv("METASPEND_FRESHNESS_DEADLINE_CRON", "30 11 * * *")
    definitions = load()
    spec = definitions.resolve_assets_def("meta_spend_daily").specs_by_key[dg.AssetKey("meta_spend_daily")]
    for name in [*ASSETS, *BREAKDOWNS, "fx_rates_daily"]:
        assert definitions.resolve_assets_def(name).partitions_def.get_first_partition_key() == start, name
    first = dt.date.fromisoformat(start)
    weeks = definitions.resolve_assets_def("meta_reach_weekly").partitions_def
    assert weeks.get_first_partition_key() == (first - dt.timedelta(days=first.weekday())).isoformat()
    months = definitions.resolve_assets_def("meta_reach_monthly").partitions_def
    assert months.get_first_partition_key() == first.replace(day=1).isoformat()
    assert definitions.resolve_job_def("meta_spend_job").partitions_def.get_first_partition_key() == start
    assert spec.freshness_policy == dg.FreshnessPolicy.cron(
        deadline_cron="30 11 * * *", lower_bound_delta=dt.timedelta(hours=24)
    )
    schedule = definitions.resolve_schedule_def("meta_spend_schedule")
    [request, *_] = (
        schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=dt.datetime.combine(TODAY, dt.time(6), dt.UTC))
        ).run_requests
        or []
    )
    # yesterday and the 5 days before
    assert request.tags["dagster/asset_partition_range_start"] == (TODAY - dt.timedelta(days=6)).isoformat()


def test_the_column_schema_follows_the_configured_database(env: dict[str, str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from metaspend_pipeline.storage.schema import meta_spend_daily

    def spend_type(database_url: str) -> str:
        settings = dataclasses.replace(Settings.from_env(), database_url=database_url)
        graph = build_definitions(settings).resolve_asset_graph()
        schema = graph.get(dg.AssetKey("meta_spend_daily")).metadata["dagster/column_schema"]
        columns = {c.name: c for c in schema.columns}
        assert columns["spend"].description == meta_spend_daily.c.spend.comment
        assert all(c.description for c in schema.columns)
        return columns["spend"].type

    assert spend_type("postgresql+psycopg://u@h/db") == "NUMERIC(18, 2)"
    assert spend_type("sqlite:///x.db") == meta_spend_daily.c.spend.type.compile(dialect=sa.dialects.sqlite.dialect())
    monkeypatch.delenv("METASPEND_DATABASE_URL")
    assert Settings.from_env().database_url.startswith("sqlite:")  # unset: the embedded SQLite


def test_dagster_definitions_validate() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_"))}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_a_shells_settings_at_import_do_not_stick() -> None:
    """Importing the package with META_* set, then building without them: nothing was captured."""
    code = (
        "import os\n"
        "import metaspend_pipeline.definitions as d, metaspend_pipeline.defs.meta_spend.assets, metaspend_pipeline.defs.meta_spend.schedules\n"
        "del os.environ['META_SPEND_START_DATE'], os.environ['METASPEND_FRESHNESS_DEADLINE_CRON']\n"
        "defs = d.load()\n"
        "print(defs.resolve_assets_def('meta_spend_daily').partitions_def.get_first_partition_key())\n"
        "print(defs.resolve_assets_def('meta_spend_daily').specs_by_key[d.dg.AssetKey('meta_spend_daily')]"
        ".freshness_policy.deadline_cron)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_"))}
    env.update({"META_SPEND_START_DATE": "2025-06-01", "METASPEND_FRESHNESS_DEADLINE_CRON": "0 3 * * *"})
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2024-01-01", "0 9 * * *"]


# Settings a developer may have exported, each far from its default.
SHELL_SETTINGS = {
    "META_SPEND_START_DATE": "2025-09-09",
    "META_SPEND_LOOKBACK_DAYS": "11",
    "METASPEND_ROAS_LOOKBACK_DAYS": "2",
    "METASPEND_FRESHNESS_DEADLINE_CRON": "17 2 * * *",
    "META_FETCH_WINDOW_DAYS": "2",
    "META_SPEND_CRON": "5 23 * * 3",
    "METASPEND_SCHEDULE_TIMEZONE": "Asia/Tokyo",
    "META_PAGE_SIZE": "3",
    "META_GRAPH_API_URL": "http://127.0.0.1:9",
    "METASPEND_ENV": "production",
    "METASPEND_DATABASE_URL": "sqlite:////nonexistent/shell.db",
}


def test_a_shells_settings_do_not_change_a_tests_outcome() -> None:
    """The suite's own tests of the defaults pass with every setting above exported in the shell."""
    env = {**os.environ, **SHELL_SETTINGS}
    tests = [
        "metaspend_pipeline_tests/defs/test_definitions.py::test_the_partitions_end_yesterday",
        "metaspend_pipeline_tests/defs/test_schedules.py::test_a_tick_fetches_yesterday_and_the_lookback_and_recomputes_roas",
        "metaspend_pipeline_tests/defs/test_schedules.py::test_token_refresh_tick_requests_one_run",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("4 passed in")  # the first on SQLite and on PostgreSQL


# --- the layout: dg's defs folder, public Dagster APIs, plain code without Dagster ------------------

PACKAGE = ROOT / "metaspend_pipeline"
# The modules outside defs/ that drive Dagster (the code location, `metaspend backfill --wait`, the demo).
DAGSTER_DRIVERS = {"definitions.py", "cli/backfill.py", "demo.py"}


def _imports(path: Path) -> set[str]:
    import ast

    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_no_private_dagster_api_is_imported_anywhere_in_the_package() -> None:
    private = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imports(path) if m.startswith("dagster._"))
        for path in PACKAGE.rglob("*.py")
    }
    assert {path: modules for path, modules in private.items() if modules} == {}


def test_plain_code_outside_defs_never_imports_dagster() -> None:
    """The client, storage, ROAS, FX, tokens and the sandbox know nothing of Dagster: only defs/ and the
    three modules that drive it do."""
    importing = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(m == "dagster" or m.startswith("dagster.") or m.startswith("dagster_") for m in _imports(path))
    }
    assert {p for p in importing if not p.startswith("defs/")} == DAGSTER_DRIVERS
    assert importing >= {"defs/meta_spend/assets.py", "defs/roas/assets.py"}  # the control: the scan sees imports


def test_an_asset_scaffolded_with_dg_loads_with_no_other_edit(tmp_path: Path) -> None:
    """`dg scaffold defs dagster.asset new_asset.py` in a copy of the project: the file lands under defs/
    and `dg list defs` lists the new asset beside the project's own."""
    import shutil

    project = tmp_path / "project"
    shutil.copytree(
        ROOT, project, ignore=shutil.ignore_patterns(".venv", ".git", ".metaspend", "mutants", "__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_"))}
    env["PYTHONPATH"] = str(project)  # the copy's package, not the editable install's
    dg_command = str(Path(sys.executable).with_name("dg"))
    scaffold = subprocess.run(
        [dg_command, "scaffold", "defs", "dagster.asset", "new_asset.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    assert (project / "metaspend_pipeline" / "defs" / "new_asset.py").is_file()
    listed = subprocess.run(
        [dg_command, "list", "defs", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    import json

    keys = {asset["asset_key"] for asset in json.loads(listed.stdout[listed.stdout.index("{") :])["assets"]}
    assert keys >= {"new_asset", "meta_raw_insights", "meta_roas_by_ad"}
