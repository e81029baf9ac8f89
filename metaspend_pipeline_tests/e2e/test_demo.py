"""The README's main command, as a user runs it: `metaspend demo` in a fresh directory."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import lead
from metaspend_pipeline.tokens import generate_key

METASPEND = Path(sys.executable).with_name("metaspend")


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


def test_the_demo_runs_the_pipeline_and_prints_roas(tmp_path: Path) -> None:
    """Run twice in a shell whose DAGSTER_HOME and METASPEND_DATABASE_URL point at a production
    instance and warehouse: the demo works, and writes only under .metaspend/."""
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
        outputs.append(proc.stdout + proc.stderr)
    out = outputs[-1]
    assert "connected demo-org-1: act_1000000001, act_1000000002 (token encrypted)" in out
    assert "check meta_spend_daily.levels_reconcile: passed" in out
    assert "check meta_spend_daily.yesterday_loaded: passed" in out
    report = out.split("==> ROAS of demo-org-1 by campaign", 1)[1]
    assert "campaignId" in report
    assert " USD" in report
    assert " EUR" in report
    converted = report.split("==> the same in demo-org-1's reporting currency, USD", 1)[1]
    assert " EUR" not in converted.split("==> done", 1)[0]  # one currency: every campaign converted to USD
    home = work / ".metaspend" / "dagster"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert sorted(r.job_name for r in runs) == ["meta_spend_job"] * 2 + ["product_tables_observe_job"] * 2
        assert all(r.is_success for r in runs)
        # launched from the code location, as the UI does: listed under the job, re-executable there
        for run in runs:
            origin = run.remote_job_origin
            assert origin is not None and origin.job_name == run.job_name
            assert origin.location_name == "metaspend_pipeline.definitions"
        assert instance.fetch_observations(dg.AssetKey("lead"), limit=1).records
    assert "EAAsbx" not in "".join(outputs)  # the sandbox's tokens are never printed

    assert _snapshot(production) == production_before  # byte for byte
    assert _snapshot(work, skip=".metaspend") == work_before
    assert f"DAGSTER_HOME={home.resolve()}" in out
