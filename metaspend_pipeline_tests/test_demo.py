"""The README's main command, as a user runs it: `metaspend demo` in a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

METASPEND = Path(sys.executable).with_name("metaspend")


@pytest.mark.e2e
def test_the_demo_runs_the_pipeline_and_prints_roas(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("META_", "METASPEND_", "DAGSTER_"))}
    outputs = []
    for _ in range(2):  # a second run reuses the demo's key and warehouse
        proc = subprocess.run(
            [str(METASPEND), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        outputs.append(proc.stdout + proc.stderr)
    out = outputs[-1]
    assert "connected demo-org-1: act_1000000001, act_1000000002 (token encrypted)" in out
    assert "check meta_spend_daily.levels_reconcile: passed" in out
    report = out.split("==> ROAS of demo-org-1 by campaign", 1)[1]
    assert "campaignId" in report
    assert " USD" in report
    assert " EUR" in report
    home = tmp_path / ".metaspend" / "dagster"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        assert all(r.is_success for r in runs)
    assert "EAAsbx" not in "".join(outputs)  # the sandbox's tokens are never printed
