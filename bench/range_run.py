"""A range run through Dagster at a real account's size: every step, on PostgreSQL.

    .venv/bin/python bench/range_run.py [--ads 1000] [--days 365] [--latency 0.05]

The sandbox runs in its own process with one benchmark ad account of `--ads` ads and answers
after `--latency` seconds. `meta_spend_job` runs in this process over the last `--days` days
(one single-run backfill, as `dagster asset materialize --partition-range` runs it) into a fresh
PostgreSQL warehouse. Reported: wall time per step (from Dagster's step events), Meta requests
against the floor (the sum over levels of ceil(rows / page size)), and this process's peak RSS
(everything the run held: Dagster, the client, the writes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import resource
import time
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from _sandbox import sandbox_process

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PAGE_SIZE = 500


def run(ads: int = 1000, days: int = 365, latency: float = 0.05) -> dict[str, Any]:
    name = f"metaspend_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        with sandbox_process("--bench-ads", str(ads), "--latency", str(latency)) as sandbox_url:
            return _run(url, sandbox_url, days, ads)
    finally:
        from metaspend_pipeline.storage import db

        db.engine_for(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(url: str, sandbox_url: str, days: int, ads: int) -> dict[str, Any]:
    from metaspend_pipeline.tokens import generate_key

    os.environ.update(
        {
            "METASPEND_ENV": "development",
            "META_GRAPH_API_URL": sandbox_url,
            "METASPEND_DATABASE_URL": url,
            "META_TOKEN_ENCRYPTION_KEY": generate_key(),
            "META_PAGE_SIZE": str(PAGE_SIZE),
            "META_ASYNC_POLL_INITIAL_SECONDS": "0.2",
        }
    )
    import dagster as dg

    from metaspend_pipeline import credentials
    from metaspend_pipeline.definitions import load
    from metaspend_pipeline.sandbox.control import SandboxAdmin
    from metaspend_pipeline.sandbox.world import BENCH_ACCOUNT, BENCH_ORGANIZATION
    from metaspend_pipeline.storage import db
    from metaspend_pipeline.storage.schema import meta_raw_insights, meta_spend_daily
    from metaspend_pipeline.tokens import KeyRing

    db.upgrade(url)
    engine = db.engine_for(url)
    token = next(
        o["token"] for o in SandboxAdmin(sandbox_url).organizations() if o["organization_id"] == BENCH_ORGANIZATION
    )
    with engine.begin() as conn:
        credentials.store_connection(
            conn, KeyRing.from_env(), BENCH_ORGANIZATION, "FACEBOOK", [BENCH_ACCOUNT], token, None
        )
    until = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    since = until - dt.timedelta(days=days - 1)
    tags = {
        "dagster/asset_partition_range_start": since.isoformat(),
        "dagster/asset_partition_range_end": until.isoformat(),
    }
    run_config = {
        "ops": {"meta_raw_insights": {"config": {"organizations": [BENCH_ORGANIZATION]}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        result = (
            load()
            .resolve_job_def("meta_spend_job")
            .execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
        )
        wall = time.perf_counter() - started
        steps: dict[str, float] = {}
        begun: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            if event.event_type_value == "STEP_START":
                begun[event.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in begun:
                steps[event.step_key] = entry.timestamp - begun[event.step_key]
    assert result.success, "the benchmark run failed"
    requests = len(SandboxAdmin(sandbox_url).requests())
    with engine.connect() as conn:
        by_level = dict(
            conn.execute(
                sa.select(meta_raw_insights.c.level, sa.func.count()).group_by(meta_raw_insights.c.level)
            ).all()
        )
        spend_rows = conn.execute(sa.select(sa.func.count()).select_from(meta_spend_daily)).scalar_one()
    floor = sum(math.ceil(n / PAGE_SIZE) for n in by_level.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "ads": ads,
        "days": days,
        "spend_rows": spend_rows,
        "raw_rows_by_level": by_level,
        "requests": requests,
        "floor": floor,
        "requests_over_floor": round(requests / floor, 3),
        "wall_seconds": round(wall, 1),
        "step_seconds": {k: round(v, 1) for k, v in sorted(steps.items())},
        "spend_plus_roas_seconds": round(steps.get("meta_spend_daily", 0) + steps.get("meta_roas", 0), 1),
        "peak_rss_mb": round(peak_mb),
    }
    print(
        f"{days} days x {ads} ads: {spend_rows:,} rows in meta_spend_daily; {requests} Meta requests for a floor of "
        f"{floor} ({out['requests_over_floor']}x); wall {out['wall_seconds']} s; steps {out['step_seconds']}; "
        f"peak RSS {out['peak_rss_mb']} MB"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ads", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    run(args.ads, args.days, args.latency)


if __name__ == "__main__":
    main()
