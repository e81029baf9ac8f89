"""One `meta_spend_schedule` tick for many organizations, through Dagster: wall time and requests.

    .venv/bin/python bench/schedule_tick.py [--organizations 20] [--ads 200] [--latency 0.15]
                                            [--concurrency 1,4] [--smoke]

The sandbox runs in its own process with `--organizations` benchmark organizations of one ad
account (`--ads` ads) each, all of them connected in a fresh PostgreSQL warehouse. The schedule
is evaluated for today's tick and each of its run requests (the daily fetch of yesterday and the
days Meta may restate, then the ROAS-only look-back) runs as `meta_spend_job` with the request's
tags and asset selection, as the daemon would launch it. The tick runs once per value of
META_FETCH_CONCURRENCY given; it reports each run's wall time, the Meta requests and the rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dagster as dg
import sqlalchemy as sa
from _sandbox import sandbox_process
from many_accounts import warehouse

from metaspend_pipeline.credentials import store_connection
from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.common.resources import MetaAdsResource, WarehouseResource
from metaspend_pipeline.defs.meta_spend.assets import meta_raw_insights, meta_spend_daily
from metaspend_pipeline.defs.meta_spend.schedules import build_spend_schedule
from metaspend_pipeline.defs.product.assets import table_specs
from metaspend_pipeline.defs.roas.assets import meta_roas
from metaspend_pipeline.defs.roas.checks import meta_roas_checks
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import db
from metaspend_pipeline.tokens import KeyRing, generate_key

FULL = {"organizations": 20, "ads": 200}
SMOKE = {"organizations": 5, "ads": 50}


def tick(url: str, db_url: str, scheduled: dt.datetime) -> dict[str, Any]:
    """Evaluate the schedule once and run what it asks for, one run after the other."""
    warehouse_resource = WarehouseResource(database_url=db_url)
    resources = {
        "warehouse": warehouse_resource,
        "meta": MetaAdsResource(
            warehouse=warehouse_resource,
            token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
            async_poll_initial_seconds=0.5,
        ),
    }
    # the sandbox as Meta: the endpoint comes from the environment only, in development
    os.environ["METASPEND_ENV"] = "development"
    os.environ["META_GRAPH_API_URL"] = url
    admin = SandboxAdmin(url)
    before = len(admin.requests())
    started = time.monotonic()
    schedule = build_spend_schedule(Settings.from_env())
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=scheduled))
    runs = []
    job = load().resolve_job_def("meta_spend_job")
    with dg.instance_for_test() as instance:
        for request in data.run_requests or []:
            run_started = time.monotonic()
            if request.asset_selection is None:
                result = job.execute_in_process(
                    tags=request.tags, resources=resources, instance=instance, raise_on_error=False
                )
            else:  # the ROAS-only run: the job's assets, this selection (a job subset cannot take new resources)
                result = dg.materialize(
                    [*table_specs(), meta_raw_insights, meta_spend_daily, meta_roas, meta_roas_checks],
                    selection=request.asset_selection,
                    tags=request.tags,
                    resources=resources,
                    instance=instance,
                    raise_on_error=False,
                )
            runs.append(
                {
                    "purpose": request.tags.get("metaspend/purpose"),
                    "days": f"{request.tags['dagster/asset_partition_range_start']}.."
                    f"{request.tags['dagster/asset_partition_range_end']}",
                    "success": result.success,
                    "wall_s": round(time.monotonic() - run_started, 2),
                }
            )
    wall = time.monotonic() - started
    with db.engine_for(db_url).connect() as conn:
        spend_rows = conn.execute(sa.text("SELECT count(*) FROM meta_spend_daily")).scalar_one()
        roas_rows = conn.execute(sa.text("SELECT count(*) FROM meta_roas_by_ad")).scalar_one()
    return {
        "wall_s": round(wall, 2),
        "requests": len(admin.requests()) - before,
        "runs": runs,
        "meta_spend_daily_rows": spend_rows,
        "meta_roas_by_ad_rows": roas_rows,
    }


def run(smoke: bool, **overrides: Any) -> dict[str, Any]:
    size = {**(SMOKE if smoke else FULL), **{k: v for k, v in overrides.items() if v is not None and k in FULL}}
    latency = overrides.get("latency") or 0.15
    concurrencies = [int(c) for c in str(overrides.get("concurrency") or "1,4").split(",")]
    scheduled = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)
    print(
        f"schedule tick: {size['organizations']} organizations of one ad account with {size['ads']} ads, "
        f"{latency * 1000:.0f} ms per request, PostgreSQL, tick of {scheduled:%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    os.environ.setdefault("META_TOKEN_ENCRYPTION_KEY", generate_key())
    args = ("--bench-accounts", str(size["organizations"]), "--bench-ads", str(size["ads"]), "--latency", str(latency))
    results = {}
    with sandbox_process(*args) as url, warehouse("postgres") as db_url:
        admin = SandboxAdmin(url, timeout=120)
        with db.engine_for(db_url).begin() as conn:
            for org in admin.organizations():
                if org["organization_id"].startswith("bench-org-"):
                    store_connection(
                        conn,
                        KeyRing.from_env(),
                        org["organization_id"],
                        org["provider"],
                        org["ad_accounts"],
                        org["token"],
                        None,
                    )
        for concurrency in concurrencies:
            admin.reset()
            admin.configure(latency_seconds=latency)
            os.environ["META_FETCH_CONCURRENCY"] = str(concurrency)
            result = tick(url, db_url, scheduled)
            results[concurrency] = result
            runs = "; ".join(
                f"{r['purpose']} {r['days']} {r['wall_s']} s{'' if r['success'] else ' FAILED'}" for r in result["runs"]
            )
            print(
                f"  META_FETCH_CONCURRENCY={concurrency}: tick {result['wall_s']} s, {result['requests']} Meta requests "
                f"({runs}); meta_spend_daily {result['meta_spend_daily_rows']} rows",
                flush=True,
            )
    return {**size, "latency_ms": latency * 1000, "by_concurrency": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help=f"a smaller size: {SMOKE}")
    parser.add_argument("--organizations", type=int)
    parser.add_argument("--ads", type=int)
    parser.add_argument("--latency", type=float)
    parser.add_argument("--concurrency", help="comma-separated values of META_FETCH_CONCURRENCY, e.g. 1,4")
    args = vars(parser.parse_args())
    run(args.pop("smoke"), **args)


if __name__ == "__main__":
    main()
