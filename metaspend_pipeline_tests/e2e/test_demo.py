"""The README's quick start, as a user runs it: `metaspend demo` in a fresh directory, then the UI
that `dg dev` starts, where the demo's run is re-executed."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import requests
import sqlalchemy as sa

from metaspend_pipeline.demo import LOOK_AROUND
from metaspend_pipeline.meta import versions
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import lead, meta_spend_daily
from metaspend_pipeline.tokens import generate_key
from metaspend_pipeline_tests._dagster_processes import (
    LOCATION,
    ROOT,
    GraphQL,
    Processes,
    clean_env,
    dg_dev,
    wait_for,
)

METASPEND = Path(sys.executable).with_name("metaspend")
REEXECUTE = """
mutation Reexecute($parentRunId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status parentRunId rootRunId jobName repositoryOrigin { repositoryLocationName } } }
}
"""


def _snapshot(directory: Path, skip: str | None = None) -> dict[str, str]:
    """Every file under `directory` (but `skip`) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not (skip and p.relative_to(directory).parts[0] == skip)
    }


def _production(root: Path) -> dict[str, str]:
    """A "production" Dagster home and warehouse with content, as an operator's shell would point at."""
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("# production instance\ntelemetry:\n  enabled: false\n")
    url = f"sqlite:///{root / 'warehouse.db'}"
    db.upgrade(url)
    with db.engine_for(url).begin() as conn:
        conn.execute(
            sa.insert(lead),
            [{"id": "prod-lead-1", "organization_id": "prod-org", "created_at": dt.datetime.now(dt.UTC)}],
        )
    db.engine_for(url).dispose()
    return {
        "DAGSTER_HOME": str(home),
        "METASPEND_DATABASE_URL": url,
        "METASPEND_ENV": "production",
        "META_TOKEN_ENCRYPTION_KEY": generate_key(),
        "META_GRAPH_API_URL": "https://graph.facebook.com",
    }


def _demo_env(work: Path) -> dict[str, str]:
    """What `source .metaspend/demo.env` exports."""
    values = {}
    for line in (work / ".metaspend" / "demo.env").read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            values[name] = value.strip("'")
    return values


def _spend_rows(url: str) -> list[tuple]:
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.select(meta_spend_daily.c.organization_id, meta_spend_daily.c.date, meta_spend_daily.c.level)
            .add_columns(meta_spend_daily.c.campaign_id, meta_spend_daily.c.adset_id, meta_spend_daily.c.ad_id)
            .add_columns(meta_spend_daily.c.spend, meta_spend_daily.c.updated_at)
        ).all()
    db.engine_for(url).dispose()
    return sorted(tuple(r) for r in rows)


def test_the_demo_runs_quietly_and_its_run_re_executes_in_the_ui_the_readme_starts(tmp_path: Path) -> None:
    """Twice in a shell whose DAGSTER_HOME and METASPEND_DATABASE_URL point at a production instance and
    warehouse: the demo works, writes only under .metaspend/, prints progress on stdout and nothing on
    stderr. Then, as the README says: the sandbox served from demo.env, `dg dev`, and the demo's run
    re-executed through the webserver's GraphQL the way the UI's "Re-execute all" does it."""
    production = tmp_path / "production"
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the user's own file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_", "DAGSTER_"))}
    env.update(_production(production))
    production_before = _snapshot(production)
    work_before = _snapshot(work)
    outputs = []
    for _ in range(2):  # a second run reuses the demo's key and warehouse
        proc = subprocess.run(
            [str(METASPEND), "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert proc.stderr == ""  # no warnings, no Dagster log: that went to .metaspend/dagster.log
        outputs.append(proc.stdout)
    out = outputs[-1]
    assert "connected demo-org-1: act_1000000001, act_1000000002 (token encrypted)" in out
    assert "meta_raw_insights: done, 14 day(s) written" in out  # progress lines of the run
    assert "check meta_spend_daily.levels_reconcile: passed" in out
    assert "check meta_spend_daily.yesterday_loaded: passed" in out
    for table in ("meta_spend_by_age_gender", "meta_spend_by_country", "meta_spend_by_placement"):
        assert f"check {table}.adds_up_to_meta_spend_daily: passed" in out
    for check in ("reach_not_above_impressions", "adds_up_to_meta_spend_daily", "every_organization_written"):
        assert f"check meta_reach_monthly.{check}: passed" in out
    assert ": failed" not in out
    month = out.split("==> reach of the month of ", 1)[1][:7]
    assert f"meta_reach_monthly: done, 1 month(s) written ({month}-01..{month}-01)" in out
    # the default Marketing API version, which the demo's sandbox serves as Meta does today: no warning
    assert f"Marketing API {versions.DEFAULT_VERSION}" in out and "Meta warns" not in out
    if versions.version_status(versions.DEFAULT_VERSION, dt.datetime.now(dt.UTC).date()).level == "ok":
        assert "check meta_raw_insights.meta_api_version_current: passed" in out
    assert "DEBUG" not in out and "BetaWarning" not in out
    assert "ASSET_MATERIALIZATION" in (work / ".metaspend" / "dagster.log").read_text()
    report = out.split("==> ROAS of demo-org-1 by campaign", 1)[1]
    assert "campaignId" in report and " USD" in report and " EUR" in report
    converted = report.split("==> the same in demo-org-1's reporting currency, USD", 1)[1]
    assert " EUR" not in converted.split("==>", 1)[0]  # one currency: every campaign converted to USD
    ages = out.split("==> spend of demo-org-1 by campaign, age and gender", 1)[1].split("==>", 1)[0]
    assert "campaignName" in ages and "25-34" in ages and "female" in ages
    reach = out.split("==> reach of demo-org-1 by campaign in", 1)[1].split("==>", 1)[0]
    assert "monthStart" in reach and "reach" in reach and "frequency" in reach
    assert out.rstrip().splitlines()[-len(LOOK_AROUND) :] == [line.rstrip() for line in LOOK_AROUND]
    readme = (ROOT / "README.md").read_text()
    for line in LOOK_AROUND:  # the closing hint's commands are the README's, as written there
        command = line.split("#", 1)[0].replace("look around in the Dagster UI:", "").strip()
        assert f"\n{command} " in readme, command
    assert "EAAsbx" not in "".join(outputs)  # the sandbox's tokens are never printed
    assert _snapshot(production) == production_before  # byte for byte
    assert _snapshot(work, skip=".metaspend") == work_before

    home = work / ".metaspend" / "dagster"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert [r.job_name for r in runs] == ["meta_reach_monthly_job", "meta_spend_job"] * 2
        assert all(r.is_success for r in runs)
        for run in runs[1::2]:  # the spend runs: created from the code location, under the name dg dev gives it
            assert run.remote_job_origin is not None
            assert run.remote_job_origin.location_name == LOCATION
        assert instance.fetch_materializations(dg.AssetKey("meta_reach_monthly"), limit=1).records
        assert instance.fetch_observations(dg.AssetKey("lead"), limit=1).records  # the product's tables observed
        parent = runs[1].run_id  # the latest of meta_spend_job

    demo = clean_env(**_demo_env(work))
    url = demo["METASPEND_DATABASE_URL"]
    before = _spend_rows(url)
    with _sandbox_and_dg_dev(demo, tmp_path) as graphql:
        launched = graphql(REEXECUTE, parentRunId=parent)["launchPipelineReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child = launched["run"]["runId"]
        assert graphql.wait_for_run(child) == "SUCCESS"
        run = graphql(RUN, runId=child)["runOrError"]
        assert (run["parentRunId"], run["rootRunId"], run["jobName"]) == (parent, parent, "meta_spend_job")
        assert run["repositoryOrigin"]["repositoryLocationName"] == LOCATION
    assert _spend_rows(url) == before  # the same rows, untouched: a rerun of unchanged days changes nothing
    with db.engine_for(url).connect() as conn:
        fetched = raw_store.fetches_of_run(conn, child)
    db.engine_for(url).dispose()
    assert len(fetched) == 5 and {f.status for f in fetched} == {"OK"}  # it did ask the sandbox again


@contextmanager
def _sandbox_and_dg_dev(env: dict[str, str], directory: Path) -> Iterator[GraphQL]:
    """`metaspend sandbox serve` with demo.env's settings (the README's `source .metaspend/demo.env;
    metaspend sandbox serve &`), then `dg dev` from the repository root."""
    with ExitStack() as stack:
        processes = Processes(stack, directory)
        processes.start("sandbox", [str(METASPEND), "sandbox", "serve"], env, cwd=ROOT)
        wait_for(lambda: _answers(env["META_GRAPH_API_URL"]) or None, 60, "the sandbox", processes.check_alive)
        yield stack.enter_context(dg_dev(env, directory))


def _answers(url: str) -> bool:
    try:
        requests.get(f"{url}/__sandbox/organizations", timeout=2)
    except requests.ConnectionError:
        return False
    return True
