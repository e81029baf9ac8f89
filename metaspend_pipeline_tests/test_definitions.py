"""The Definitions object, wired as the issues' contract says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from metaspend_pipeline.definitions import defs
from metaspend_pipeline.partitions import meta_spend_partitions

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ["meta_raw_insights", "meta_spend_daily", "meta_roas_by_campaign", "meta_roas_by_adset", "meta_roas_by_ad"]


def test_definitions_load_with_the_contract_names() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(ASSETS) | {"lead", "sale"} <= keys
    for name in ("meta_spend_job", "meta_spend_checks_job", "meta_token_refresh_job"):
        assert defs.resolve_job_def(name).name == name
    for name in ("meta_spend_schedule", "meta_token_refresh_schedule"):
        assert defs.resolve_schedule_def(name).name == name
    assert defs.resolve_sensor_def("meta_spend_freshness_sensor").name == "meta_spend_freshness_sensor"
    assert {"warehouse", "meta"} <= set(defs.resources or {})


def test_the_five_assets_share_partitions_and_run_ranges_in_one_run() -> None:
    graph = defs.resolve_asset_graph()
    for name in ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == meta_spend_partitions, name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
        assert node.group_name == "meta_spend"
        assert node.description
    assert not graph.get(dg.AssetKey("lead")).is_materializable  # the product's table: external
    roas = graph.get(dg.AssetKey("meta_roas_by_ad"))
    assert {k.to_user_string() for k in roas.parent_keys} == {"meta_spend_daily", "lead", "sale"}


def test_meta_fetches_are_bounded_by_the_meta_api_pool() -> None:
    assert defs.resolve_assets_def("meta_raw_insights").node_def.pool == "meta_api"


def test_the_partitions_end_yesterday() -> None:
    import datetime as dt

    last = meta_spend_partitions.get_last_partition_key()
    assert last == (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    assert meta_spend_partitions.get_first_partition_key() == "2024-01-01"


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
