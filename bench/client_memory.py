"""Peak memory growth of the client while it streams >= 100,000 ad-level rows from the sandbox.

    .venv/bin/python bench/client_memory.py [--ads 400] [--days 365] [--page-size 500]

The sandbox runs in its own process (its memory is not counted). The client streams page by
page, so its memory should stay flat however many rows: the target is under 100 MB of growth.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time

from _sandbox import sandbox_process

from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.sandbox.world import BENCH_ACCOUNT, BENCH_ORGANIZATION
from metaspend_pipeline.settings import MetaApiSettings


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ads", type=int, default=400)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    until = dt.date.today() - dt.timedelta(days=1)
    since = until - dt.timedelta(days=args.days - 1)
    with sandbox_process("--bench-ads", str(args.ads)) as url:
        token = next(
            o["token"] for o in SandboxAdmin(url).organizations() if o["organization_id"] == BENCH_ORGANIZATION
        )
        settings = MetaApiSettings(graph_api_url=url, page_size=args.page_size, async_poll_initial=0.2)
        client = MetaClient(token, settings)
        client.ad_account(BENCH_ACCOUNT)  # warm up: imports, connection pool
        before = rss_mb()
        started = time.monotonic()
        rows = 0
        spend = 0
        for row in client.insights(BENCH_ACCOUNT, "ad", since, until):
            rows += 1
            spend += row.spend
        elapsed = time.monotonic() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows streamed:        {rows:,} ({args.ads} ads x {args.days} days, page size {args.page_size})")
    print(
        f"requests:             {client.stats.requests} ({client.stats.pages} pages, {client.stats.async_jobs} report runs)"
    )
    print(f"wall time:            {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)")
    print(f"RSS before the fetch: {before:.1f} MB")
    print(f"peak RSS:             {peak:.1f} MB")
    print(f"peak growth:          {peak - before:.1f} MB (target < 100 MB)")
    if rows < 100_000:
        print("note: fewer than 100,000 rows; raise --ads or --days")


if __name__ == "__main__":
    main()
