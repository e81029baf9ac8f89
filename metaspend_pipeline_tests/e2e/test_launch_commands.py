"""A backfill from the command line: `dagster asset materialize --partition-range`, in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import iso
from metaspend_pipeline_tests.defs.test_assets import sort_rows, spend_rows, truth_rows

ROOT = Path(__file__).resolve().parents[2]


def _command(tool: str) -> tuple[list[str], Path | None]:
    """The command line of a range backfill, and the directory it must run in (dg finds the project
    from there; `dagster` is pointed at the module)."""
    bin_dir = Path(sys.executable).parent
    if tool == "dg":
        return [str(bin_dir / "dg"), "launch", "--assets", "meta_raw_insights*,fx_rates_daily"], ROOT
    return [
        str(bin_dir / "dagster"),
        "asset",
        "materialize",
        "-m",
        "metaspend_pipeline.definitions",
        "--select",
        "meta_raw_insights*,fx_rates_daily",
    ], None


@pytest.mark.parametrize("tool", ["dg", "dagster"])
def test_cli_backfill_of_one_newly_connected_organization(pipeline: Pipeline, tmp_path: Path, tool: str) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "META_GRAPH_API_URL": pipeline.sandbox_url,
        "META_ASYNC_POLL_INITIAL_SECONDS": "0.01",
    }
    config = {"ops": {"meta_raw_insights": {"config": {"organizations": ["demo-org-2"]}}}}
    command, cwd = _command(tool)
    proc = subprocess.run(
        [*command, "--partition-range", f"{iso(1)}...{iso(3)}", "--config-json", json.dumps(config)],
        cwd=cwd or tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, ["demo-org-2"], iso(1), iso(3))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.tags["dagster/asset_partition_range_start"] == iso(1)
        assert instance.get_materialized_partitions(dg.AssetKey("meta_roas_by_ad")) == {
            iso(1),
            iso(2),
            iso(3),
        }
    for org in pipeline.sandbox.world.organizations:
        assert org.token not in proc.stdout + proc.stderr
