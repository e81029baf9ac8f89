"""Two overlapping range runs launched at once on PostgreSQL, each in its own process and Dagster
home (a backfill over the daily tick): both succeed, and the tables equal one run's, without a
duplicate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from metaspend_pipeline.storage.schema import ROAS_TABLES, meta_raw_insights, meta_spend_daily
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import iso
from metaspend_pipeline_tests.defs.test_assets import sort_rows, spend_rows, truth_rows

ROOT = Path(__file__).resolve().parents[2]


def _launch(tmp_path: Path, name: str, pipeline: Pipeline, first: str, last: str) -> subprocess.Popen:
    home = tmp_path / name
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "METASPEND_ENV": "development",
        "META_GRAPH_API_URL": pipeline.sandbox_url,
        "META_ASYNC_POLL_INITIAL_SECONDS": "0.01",
    }
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "asset",
            "materialize",
            "-m",
            "metaspend_pipeline.definitions",
            "--select",
            "meta_raw_insights*,fx_rates_daily",
            "--partition-range",
            f"{first}...{last}",
            "--config-json",
            json.dumps({"loggers": {"console": {"config": {"log_level": "WARNING"}}}}),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _key_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows that share a key with another row, per table (0 everywhere when nothing is duplicated)."""
    r, t = meta_raw_insights, meta_spend_daily
    raw_key = [r.c.organization_id, r.c.ad_account_id, r.c.level, r.c.date, r.c.campaign_id, r.c.adset_id, r.c.ad_id]
    spend_key = [t.c.organization_id, t.c.date, t.c.level, t.c.campaign_id, t.c.adset_id, t.c.ad_id]
    out = {}
    with engine.connect() as conn:
        for name, columns in (("meta_raw_insights", raw_key), ("meta_spend_daily", spend_key)):
            groups = sa.select(*columns).group_by(*columns).having(sa.func.count() > 1).subquery()
            out[name] = conn.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one()
    return out


def _roas(engine: sa.Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            group: sorted(
                tuple(v for k, v in row._mapping.items() if k != "updated_at") for row in conn.execute(sa.select(table))
            )
            for group, table in ROAS_TABLES.items()
        }


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # READ COMMITTED writers: PostgreSQL's case
def test_two_overlapping_ranges_at_once_both_succeed_and_equal_one_run(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.sandbox.configure(latency_seconds=0.02)  # widens the writes' overlap
    runs = [
        _launch(tmp_path, "backfill", pipeline, iso(1), iso(4)),
        _launch(tmp_path, "daily", pipeline, iso(3), iso(5)),
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    assert _key_counts(pipeline.engine) == {"meta_raw_insights": 0, "meta_spend_daily": 0}
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, start=iso(1), end=iso(5))
    together = _roas(pipeline.engine)
    # one run over the whole range, from scratch on the same data, gives the same ROAS rows
    assert pipeline.run(iso(1), iso(5)).success
    assert _roas(pipeline.engine) == together
