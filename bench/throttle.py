"""How long the client waits under Meta's rate limit, against what the limit requires.

    .venv/bin/python bench/throttle.py [--calls 30] [--window 6] [--pages 90]

The sandbox allows `--calls` calls per ad account in any `--window` seconds (a sliding window,
answered with code 80000 and Meta's usage headers beyond it). The workload needs `--pages`
calls. The least time the limit allows is floor((pages - 1) / calls) * window. Two policies run
the same workload:

- this project's client: paces from the usage headers (reset * step / usage from 85%) and, when
  blocked, waits what Meta estimates;
- fixed pauses, as an established connector does: 2 minutes at 85% usage and 10 at 95% of an
  hour's window, scaled here to the sandbox's window (2/60 and 10/60 of it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import time

from _sandbox import sandbox_process

from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.throttle import Pacer, Usage
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.settings import MetaApiSettings

ACCOUNT = "act_1000000001"


class FixedPauses(Pacer):
    """Pause a fixed share of the window at 85% and at 95% usage, whatever the usage needs."""

    def __init__(self, window: float) -> None:
        super().__init__(slowdown_pct=85, window_seconds=window)
        self.window = window

    def observe(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self._last = usage
        if usage.blocked:
            self._delay = usage.regain_seconds or usage.reset_seconds or self.window
        elif usage.pct >= 95:
            self._delay = self.window * 10 / 60
        elif usage.pct >= 85:
            self._delay = self.window * 2 / 60
        else:
            self._delay = 0.0


def run(url: str, token: str, settings: MetaApiSettings, pages: int, fixed: bool, window: float) -> dict[str, float]:
    client = MetaClient(token, settings)
    if fixed:
        client._pacer = FixedPauses(window)
    day = dt.date.today() - dt.timedelta(days=30)
    started = time.monotonic()
    calls = 0
    while calls < pages:
        for _ in client.insights(ACCOUNT, "ad", day, day, use_async=False):
            pass
        calls = client.stats.requests
    return {
        "wall": time.monotonic() - started,
        "requests": client.stats.requests,
        "throttled": client.stats.throttle_events,
        "waited": client.stats.throttle_wait_seconds + client.stats.pacing_wait_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--pages", type=int, default=90)
    args = parser.parse_args()
    minimum = (args.pages - 1) // args.calls * args.window
    print(
        f"limit: {args.calls} calls per {args.window:.0f} s per ad account; workload: {args.pages} calls; "
        f"the least the limit allows: {minimum:.1f} s"
    )
    with sandbox_process("--rate-limit-calls", str(args.calls), "--rate-limit-window", str(args.window)) as url:
        admin = SandboxAdmin(url)
        token = next(o["token"] for o in admin.organizations() if o["organization_id"] == "demo-org-1")
        settings = dataclasses.replace(
            MetaApiSettings(graph_api_url=url), page_size=1, retry_max_wait=60.0, max_retries=20
        )
        print(f"{'policy':<24} {'wall s':>7} {'x least':>8} {'throttled':>10} {'waited s':>9}")
        for name, fixed in (("this client", False), ("fixed pauses (scaled)", True)):
            admin.reset()
            admin.configure(rate_limit_calls=args.calls, rate_limit_window_seconds=args.window)
            time.sleep(args.window)  # an empty window for each policy
            r = run(url, token, settings, args.pages, fixed, args.window)
            ratio = r["wall"] / minimum if minimum else float("nan")
            print(f"{name:<24} {r['wall']:>7.1f} {ratio:>8.2f} {int(r['throttled']):>10} {r['waited']:>9.1f}")


if __name__ == "__main__":
    main()
