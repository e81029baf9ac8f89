"""A range run through Dagster at a real account's size: every step, on PostgreSQL.

    .venv/bin/python bench/range_run.py [--ads 1000] [--days 365] [--latency 0.05]

The sandbox runs in its own process with one benchmark ad account of `--ads` ads and answers
after `--latency` seconds. `meta_spend_job` runs in this process over the last `--days` days
(one single-run backfill, as `dagster asset materialize --partition-range` runs it) into a fresh
PostgreSQL warehouse: the spend, the breakdowns of META_BREAKDOWNS at META_BREAKDOWN_LEVELS (the
defaults: three sets at campaign level) and ROAS. Reported: wall time per step (from Dagster's step
events), Meta requests against their floor per report (`floors.py`: per ad account, level, set
and window, one request per page of rows), and this process's peak RSS (everything the run
held: Dagster, the client, the writes).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import resource
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa
from _sandbox import sandbox_process
from floors import request_floors

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PAGE_SIZE = 500


def run(ads: int = 1000, days: int = 365, latency: float = 0.05) -> dict[str, Any]:
    with postgres_database() as url, sandbox_process("--bench-ads", str(ads), "--latency", str(latency)) as sandbox_url:
        from metaspend_pipeline.sandbox.world import BENCH_ACCOUNT, BENCH_ORGANIZATION

        return {"ads": ads, **run_spend_job(url, sandbox_url, {BENCH_ORGANIZATION: [BENCH_ACCOUNT]}, days)}


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards."""
    name = f"metaspend_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from metaspend_pipeline.storage import db

        db.engine_for(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_spend_job(
    url: str, sandbox_url: str, organizations: dict[str, list[str]], days: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Connect `organizations` (their sandbox tokens, encrypted), run `meta_spend_job` over the last `days`
    days as one run in this process, and measure it."""
    from metaspend_pipeline.tokens import generate_key

    os.environ.update(
        {
            "METASPEND_ENV": "development",
            "META_GRAPH_API_URL": sandbox_url,
            "METASPEND_DATABASE_URL": url,
            "META_TOKEN_ENCRYPTION_KEY": generate_key(),
            "META_PAGE_SIZE": str(PAGE_SIZE),
            "META_ASYNC_POLL_INITIAL_SECONDS": "0.2",
            **(env or {}),
        }
    )
    import dagster as dg

    from metaspend_pipeline import credentials
    from metaspend_pipeline.definitions import load
    from metaspend_pipeline.sandbox.control import SandboxAdmin
    from metaspend_pipeline.settings import Settings
    from metaspend_pipeline.storage import db
    from metaspend_pipeline.storage.schema import BREAKDOWN_TABLES, meta_fetch_log, meta_raw_insights, meta_spend_daily
    from metaspend_pipeline.tokens import KeyRing

    db.upgrade(url)
    engine = db.engine_for(url)
    tokens = {o["organization_id"]: o["token"] for o in SandboxAdmin(sandbox_url).organizations()}
    with engine.begin() as conn:
        for organization_id, accounts in organizations.items():
            credentials.store_connection(
                conn, KeyRing.from_env(), organization_id, "FACEBOOK", accounts, tokens[organization_id], None
            )
    until = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    since = until - dt.timedelta(days=days - 1)
    tags = {
        "dagster/asset_partition_range_start": since.isoformat(),
        "dagster/asset_partition_range_end": until.isoformat(),
    }
    run_config = {
        "ops": {"meta_raw_insights": {"config": {"organizations": sorted(organizations)}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    before = len(SandboxAdmin(sandbox_url).requests())
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
    requests = len(SandboxAdmin(sandbox_url).requests()) - before
    settings = Settings.from_env()
    with engine.connect() as conn:
        by_level = dict(
            conn.execute(
                sa.select(meta_raw_insights.c.level, sa.func.count()).group_by(meta_raw_insights.c.level)
            ).all()
        )
        spend_rows = conn.execute(sa.select(sa.func.count()).select_from(meta_spend_daily)).scalar_one()
        breakdown_rows = {
            name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for name, t in BREAKDOWN_TABLES.items()
        }
        by_report = dict(
            conn.execute(
                sa.select(meta_fetch_log.c.report, sa.func.sum(meta_fetch_log.c.requests)).group_by(
                    meta_fetch_log.c.report
                )
            ).all()
        )
        throttle_wait = conn.execute(sa.select(sa.func.sum(meta_fetch_log.c.throttle_wait_seconds))).scalar_one()
        floors = request_floors(
            conn,
            sorted(a for accounts in organizations.values() for a in accounts),
            since,
            until,
            settings.fetch_window_days,
            PAGE_SIZE,
            breakdowns=settings.breakdowns,
            breakdown_levels=tuple(level.upper() for level in settings.breakdown_levels),
        )
    floor = sum(floors.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    written = spend_rows + sum(breakdown_rows.values())
    out = {
        "days": days,
        "spend_rows": spend_rows,
        "breakdown_rows": breakdown_rows,
        "raw_rows_by_level": by_level,
        "requests": requests,
        "floor": floor,
        "requests_over_floor": round(requests / floor, 3),
        "insights_requests": int(by_report.get("spend", 0)),
        "insights_floor": floors["insights"],
        "breakdown_requests": int(by_report.get("breakdowns", 0)),
        "breakdown_floor": floors["breakdowns"],
        "breakdown_requests_over_floor": round(int(by_report.get("breakdowns", 0)) / max(floors["breakdowns"], 1), 3),
        "throttle_wait_seconds": round(float(throttle_wait or 0), 1),
        "wall_seconds": round(wall, 1),
        "rows_per_second": round((written + sum(by_level.values())) / wall),
        "step_seconds": {k: round(v, 1) for k, v in sorted(steps.items())},
        "spend_plus_roas_seconds": round(steps.get("meta_spend_daily", 0) + steps.get("meta_roas", 0), 1),
        "peak_rss_mb": round(peak_mb),
    }
    print(
        f"{days} days, {len(organizations)} organization(s): {spend_rows:,} rows in meta_spend_daily, "
        f"{sum(breakdown_rows.values()):,} in the breakdown tables; {requests} Meta requests for a floor of {floor} "
        f"({out['requests_over_floor']}x; breakdowns {out['breakdown_requests']} / {out['breakdown_floor']}); "
        f"wall {out['wall_seconds']} s; steps {out['step_seconds']}; peak RSS {out['peak_rss_mb']} MB",
        flush=True,
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
