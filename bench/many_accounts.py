"""Many ad accounts: fetched META_FETCH_CONCURRENCY at a time against one after another.

    .venv/bin/python bench/many_accounts.py [--accounts 50] [--ads 200] [--days 90] [--concurrency 8]
                                            [--reps 1] [--latency 0.15] [--database postgres|sqlite] [--smoke]

The sandbox runs in its own process with `--accounts` benchmark ad accounts of `--ads` ads each
(one organization each), answers after `--latency` seconds, and enforces Meta's two kinds of
rate limit: per ad account (the business-use-case limit, code 80000) and for the whole app
(code 4), both reported in its usage headers. Each repetition runs the whole fetch path of the
`meta_raw_insights` asset (`ingest.fetch_organizations`: every level of every ad account into a
warehouse) once with concurrency 1 and once with `--concurrency`, in alternation, the same
requests each time; the sandbox's usage is reset between runs. It reports the medians, their
ratio (target: at least 4x) and every throttle event (target: none). At full size one repetition
takes about 11 minutes on a quiet 2-core machine (9 of them one account after another), so the
default is one; `--reps 3` gives medians.

`--requests-only` makes the same requests, with the same threads, clients and shared app pacer,
but drops the rows instead of writing them: the ceiling concurrency reaches when the warehouse
costs nothing, to tell the Meta side from the write side.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sandbox import sandbox_process

from metaspend_pipeline import ingest
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import ClientStats, MetaClient
from metaspend_pipeline.meta.throttle import AppPacer
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import db

FULL = {"accounts": 50, "ads": 200, "days": 90, "concurrency": 8, "reps": 1}
SMOKE = {"accounts": 10, "ads": 200, "days": 30, "concurrency": 8, "reps": 2}
POSTGRES_ADMIN_URL = os.environ.get("METASPEND_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Meta-like limits, scaled to the benchmark's minutes: per ad account and for the whole app
LIMITS = {
    "rate_limit_calls": 100,
    "rate_limit_window_seconds": 60.0,
    "app_rate_limit_calls": 4000,
    "app_rate_limit_window_seconds": 60.0,
}


@contextlib.contextmanager
def warehouse(kind: str) -> Iterator[str]:
    """A fresh, migrated warehouse: a PostgreSQL database of its own, or an SQLite file."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            db.upgrade(url)
            yield url
            db.engine_for(url).dispose()
        return
    import psycopg
    import sqlalchemy as sa

    admin_url = sa.make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql")
    name = f"metaspend_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine_for(url).dispose()
        with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def requests_only(accounts: list[MetaAdAccount], since: dt.date, until: dt.date, concurrency: int) -> ClientStats:
    """Every level of every ad account, `concurrency` ad accounts at a time, rows counted and dropped."""

    def drain(account: MetaAdAccount) -> None:
        account.client.ad_account(account.ad_account_id)
        for level in ingest.LEVELS:
            for _ in account.client.insights(account.ad_account_id, level, since, until):
                pass

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(drain, a) for a in accounts]:
            future.result()
    stats = ClientStats()
    for account in accounts:
        stats.add(account.client.stats)
    return stats


def fetch_once(
    url: str,
    db_url: str,
    organizations: list[dict[str, Any]],
    since: dt.date,
    until: dt.date,
    concurrency: int,
    write: bool = True,
) -> dict[str, Any]:
    """One run of the fetch path over every benchmark organization; what it cost."""
    settings = MetaApiSettings(
        graph_api_url=url,
        async_poll_initial=0.5,
        usage_window_seconds=LIMITS["app_rate_limit_window_seconds"],
        retry_max_wait=120.0,
    )
    app = AppPacer(settings.usage_slowdown_pct, settings.usage_window_seconds)
    accounts = {
        o["organization_id"]: [
            MetaAdAccount(o["organization_id"], a, o["provider"], None, MetaClient(o["token"], settings, app_pacer=app))
            for a in o["ad_accounts"]
        ]
        for o in organizations
    }
    started = time.monotonic()
    if not write:
        stats = requests_only([a for group in accounts.values() for a in group], since, until, concurrency)
        return {
            "wall_s": time.monotonic() - started,
            "requests": stats.requests,
            "rows": stats.rows,
            "throttle_events": stats.throttle_events,
            "pacing_s": stats.pacing_wait_seconds + stats.app_pacing_wait_seconds,
            "meta_wait_share": min(1.0, stats.meta_wait_seconds / ((time.monotonic() - started) * concurrency)),
            "app_usage_pct": app.last.pct if app.last else 0.0,
        }
    report = ingest.fetch_organizations(
        db.engine_for(db_url),
        sorted(accounts),
        accounts.__getitem__,
        lambda _: None,
        since,
        until,
        run_id=f"bench-{uuid.uuid4().hex[:8]}",
        window_days=92,
        concurrency=concurrency,
    )
    wall = time.monotonic() - started
    if report.failures:
        raise SystemExit("fetch failed: " + "; ".join(o.error or "" for o in report.failures))
    stats = report.stats
    return {
        "wall_s": wall,
        "requests": stats.requests,
        "rows": stats.rows,
        "throttle_events": stats.throttle_events,
        "pacing_s": stats.pacing_wait_seconds + stats.app_pacing_wait_seconds,
        "meta_wait_share": report.meta_wait_share,
        "app_usage_pct": app.last.pct if app.last else 0.0,
    }


def run(smoke: bool, **overrides: Any) -> dict[str, Any]:
    """Both modes, alternating, `reps` times; medians and their ratio."""
    size = {**(SMOKE if smoke else FULL), **{k: v for k, v in overrides.items() if v is not None and k in FULL}}
    latency = overrides.get("latency") or 0.15
    database = overrides.get("database") or "postgres"
    write = not overrides.get("requests_only")
    until = dt.date.today() - dt.timedelta(days=1)
    since = until - dt.timedelta(days=size["days"] - 1)
    print(
        f"many accounts: {size['accounts']} ad accounts x {size['ads']} ads x {size['days']} days, "
        f"{latency * 1000:.0f} ms per request, {database if write else 'requests only, rows dropped'}, "
        f"rate limits {LIMITS}",
        flush=True,
    )
    args = ("--bench-accounts", str(size["accounts"]), "--bench-ads", str(size["ads"]), "--latency", str(latency))
    results: dict[int, list[dict[str, Any]]] = {1: [], size["concurrency"]: []}
    with sandbox_process(*args) as url, warehouse(database) as db_url:
        admin = SandboxAdmin(url, timeout=120)
        organizations = [o for o in admin.organizations() if o["organization_id"].startswith("bench-org-")]
        for rep in range(size["reps"]):
            for concurrency in (1, size["concurrency"]):
                admin.reset()  # forget the previous run's usage
                admin.configure(latency_seconds=latency, **LIMITS)
                result = fetch_once(url, db_url, organizations, since, until, concurrency, write)
                results[concurrency].append(result)
                print(
                    f"  rep {rep + 1} concurrency {concurrency:>2}: {result['wall_s']:7.1f} s, "
                    f"{result['requests']} requests, {result['rows']} rows, {result['throttle_events']} throttles, "
                    f"{result['pacing_s']:.1f} s paced, waiting on Meta {result['meta_wait_share']:.0%} of thread time, "
                    f"app usage at the end {result['app_usage_pct']:.0f}%",
                    flush=True,
                )
    sequential = statistics.median(r["wall_s"] for r in results[1])
    parallel = statistics.median(r["wall_s"] for r in results[size["concurrency"]])
    summary = {
        **size,
        "latency_ms": latency * 1000,
        "database": database if write else "none (requests only)",
        "requests_per_run": results[1][0]["requests"],
        "rows_per_run": results[1][0]["rows"],
        "sequential_median_s": round(sequential, 2),
        "parallel_median_s": round(parallel, 2),
        "speedup": round(sequential / parallel, 2),
        "throttle_events": sum(r["throttle_events"] for rs in results.values() for r in rs),
        "target": ">= 4x faster, never throttled",
    }
    summary["met"] = summary["speedup"] >= 4 and summary["throttle_events"] == 0
    print(
        f"concurrency 1: {sequential:.1f} s (median of {size['reps']}); concurrency {size['concurrency']}: "
        f"{parallel:.1f} s; {summary['speedup']:.2f}x; throttle events: {summary['throttle_events']}; "
        f"target {'met' if summary['met'] else 'MISSED'}",
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help=f"a smaller size: {SMOKE}")
    for name in ("accounts", "ads", "days", "concurrency", "reps"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--latency", type=float)
    parser.add_argument("--database", choices=("postgres", "sqlite"))
    parser.add_argument("--requests-only", action="store_true", help="make the requests, drop the rows")
    args = vars(parser.parse_args())
    run(args.pop("smoke"), **args)


if __name__ == "__main__":
    main()
