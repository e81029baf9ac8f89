"""The moonshot: a 2-year backfill of 50 ad accounts x 200 ads, against the sandbox's rate limits.

    .venv/bin/python bench/moonshot.py [--accounts 50] [--ads 200] [--days 730] [--concurrency 16]
                                       [--latency 0.15] [--smoke]

What a newly connected agency asks for on its first day: two years of history for every ad
account. The sandbox runs in its own process with `--accounts` benchmark ad accounts (one
organization each), answers after `--latency` seconds and enforces Meta's two kinds of rate limit,
per ad account and for the app (the many-accounts benchmark's limits). `meta_spend_job` runs once
over the whole range, as `dg launch --partition-range` or a UI backfill runs it: the daily
insights at four levels, the breakdowns of META_BREAKDOWNS at META_BREAKDOWN_LEVELS (the defaults),
`meta_spend_daily` and ROAS, into a fresh PostgreSQL warehouse. META_FETCH_CONCURRENCY is
`--concurrency`: with Meta's limit per ad account, the accounts fetched at once set the pace.

Reported: Meta requests against their floor (`floors.py`), wall time, seconds waited on throttling,
rows written per second (raw insight rows, `meta_spend_daily` and the breakdown tables), and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
from typing import Any

from _sandbox import sandbox_process
from many_accounts import LIMITS
from range_run import postgres_database, run_spend_job

FULL = {"accounts": 50, "ads": 200, "days": 730, "concurrency": 16}
SMOKE = {"accounts": 4, "ads": 50, "days": 120, "concurrency": 4}


def run(smoke: bool = False, latency: float = 0.15, **overrides: Any) -> dict[str, Any]:
    size = {**(SMOKE if smoke else FULL), **{k: v for k, v in overrides.items() if v is not None and k in FULL}}
    from metaspend_pipeline.sandbox.control import SandboxAdmin
    from metaspend_pipeline.sandbox.world import bench_account_id, bench_organization_id

    print(
        f"moonshot: {size['accounts']} ad accounts x {size['ads']} ads x {size['days']} days, {latency * 1000:.0f} ms "
        f"per request, concurrency {size['concurrency']}, rate limits {LIMITS}",
        flush=True,
    )
    args = ("--bench-accounts", str(size["accounts"]), "--bench-ads", str(size["ads"]), "--latency", str(latency))
    with postgres_database() as url, sandbox_process(*args) as sandbox_url:
        SandboxAdmin(sandbox_url).configure(latency_seconds=latency, **LIMITS)
        organizations = {bench_organization_id(n): [bench_account_id(n)] for n in range(1, size["accounts"] + 1)}
        result = run_spend_job(
            url,
            sandbox_url,
            organizations,
            size["days"],
            env={"META_FETCH_CONCURRENCY": str(size["concurrency"])},
        )
    return {**size, "latency_ms": latency * 1000, **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help=f"a smaller size: {SMOKE}")
    for name in FULL:
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--latency", type=float, default=0.15)
    args = vars(parser.parse_args())
    run(args.pop("smoke"), args.pop("latency"), **args)


if __name__ == "__main__":
    main()
