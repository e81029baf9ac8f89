"""What a 365-day backfill of one ad account costs, by the number of days fetched per request series.

    .venv/bin/python bench/backfill.py [--ads 400] [--days 365] [--latency 0.05] [--windows 1,7,31,92,365]

The sandbox runs in its own process with a benchmark account of `--ads` ads and answers after
`--latency` seconds, like a real round trip. For each window size the whole fetch path of the
`meta_raw_insights` asset runs (every level, into a fresh SQLite warehouse), and the benchmark
reports Meta requests per level against the floor of ceil(rows / page size), and wall time.

A window of 1 day is what one run per partition costs (a multi_run(1) backfill policy, and the
seed product); 365 is one run for the whole range.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

from _sandbox import sandbox_process

from metaspend_pipeline import ingest
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.sandbox.world import BENCH_ACCOUNT, BENCH_ORGANIZATION
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ads", type=int, default=400)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--windows", default="1,7,31,92,365")
    args = parser.parse_args()
    until = dt.date.today() - dt.timedelta(days=1)
    since = until - dt.timedelta(days=args.days - 1)
    print(
        f"{args.days}-day backfill of one ad account with {args.ads} ads, page size {args.page_size}, "
        f"{args.latency * 1000:.0f} ms per request"
    )
    with sandbox_process("--bench-ads", str(args.ads), "--latency", str(args.latency)) as url:
        admin = SandboxAdmin(url)
        token = next(o["token"] for o in admin.organizations() if o["organization_id"] == BENCH_ORGANIZATION)
        settings = MetaApiSettings(graph_api_url=url, page_size=args.page_size, async_poll_initial=0.2)
        print(f"{'window':>7} {'requests':>9} {'floor':>6} {'ratio':>6} {'report runs':>12} {'wall s':>7}   per level")
        for window in (int(w) for w in args.windows.split(",")):
            admin.reset()
            admin.configure(latency_seconds=args.latency)
            with tempfile.TemporaryDirectory() as tmp:
                url_db = f"sqlite:///{Path(tmp) / 'bench.db'}"
                db.upgrade(url_db)
                engine = db.engine_for(url_db)
                client = MetaClient(token, settings)
                account = MetaAdAccount(BENCH_ORGANIZATION, BENCH_ACCOUNT, "INSTAGRAM", None, client)
                started = time.monotonic()
                report = ingest.fetch_organizations(
                    engine,
                    [BENCH_ORGANIZATION],
                    lambda _, a=account: [a],
                    lambda _: None,
                    since,
                    until,
                    run_id="bench",
                    window_days=window,
                )
                elapsed = time.monotonic() - started
                engine.dispose()
            assert not report.failures, report.failures
            rows = Counter()
            for (_, level), n in report.rows_by_day_level.items():
                rows[level] += n
            floor = sum(math.ceil(n / args.page_size) for n in rows.values())
            log = admin.requests()
            by_level = Counter()
            for r in log:
                level = r["params"].get("level")
                if level:
                    by_level[level] += 1
            per_level = ", ".join(
                f"{lv} {by_level.get(lv.lower(), 0)}/{math.ceil(rows[lv] / args.page_size)}"
                for lv in ("ACCOUNT", "CAMPAIGN", "ADSET", "AD")
            )
            print(
                f"{window:>7} {report.stats.requests:>9} {floor:>6} {report.stats.requests / floor:>6.2f} "
                f"{report.stats.async_jobs:>12} {elapsed:>7.1f}   {per_level}"
            )
        print("per level: requests that named the level (report-run polls and result pages do not) / floor")


if __name__ == "__main__":
    main()
