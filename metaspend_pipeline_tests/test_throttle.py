"""Meta's usage headers and the pacing computed from them, on hand-computed numbers.

The pacer takes its clock as an argument: these tests hand it one they move themselves, so the
expected pauses are exact (the client-level behaviour is tested against the sandbox in
test_meta_client.py).
"""

from __future__ import annotations

import json

import pytest

from metaspend_pipeline.meta.throttle import Pacer, Usage, parse_usage


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parse_usage_keeps_the_highest_figure_and_the_longest_waits() -> None:
    headers = {
        "X-Business-Use-Case-Usage": json.dumps(
            {
                "1": [
                    {"type": "ads_insights", "call_count": 100, "estimated_time_to_regain_access": 2},
                    {"type": "ads_management", "call_count": 40, "estimated_time_to_regain_access": 7},
                ]
            }
        ),
        "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 30, "reset_time_duration": 40}),
        "X-App-Usage": json.dumps({"call_count": 99}),
    }
    usage = parse_usage(headers)
    assert usage == Usage(
        pct=100.0,
        figure="x-business-use-case-usage[1:ads_insights].call_count",
        regain_seconds=420.0,  # 7 minutes, the longer of the two estimates
        reset_seconds=40.0,
    )
    assert parse_usage(headers, "app") == Usage(pct=99.0, figure="x-app-usage.call_count")


def paced_delay(pct: float, calls: int, first_call: float, now: float, window: float, reset: float | None) -> float:
    """The pause a fresh pacer (slowdown at 85%) asks for after `calls` calls made one per second
    from `first_call`, when Meta reports `pct`."""
    clock = Clock(first_call)
    pacer = Pacer(85.0, window, clock)
    for i in range(calls):
        clock.now = first_call + i
        pacer.record_call()
    clock.now = now
    pacer.observe(Usage(pct=pct, figure="x-ad-account-usage.acc_id_util_pct", reset_seconds=reset))
    return pacer.take_delay()


def test_pacing_starts_exactly_at_the_slowdown_threshold() -> None:
    """85 calls, one per second from t=1000, at t=1085 with a 100 s window: Meta says 85% (1% a call).

    The oldest call leaves the window at 1100, plus the safety margin of max(0.25 s, 2% of 100 s) = 2 s:
    17 s from now, spread over the 15 calls of headroom left and the one after: 17 / 16 = 1.0625 s.
    Just below the threshold there is no pause at all.
    """
    assert paced_delay(85.0, 85, 1000.0, 1085.0, 100.0, None) == pytest.approx(17 / 16)
    assert paced_delay(84.99, 85, 1000.0, 1085.0, 100.0, None) == 0.0


def test_pacing_keeps_a_safety_margin_of_at_least_a_quarter_second() -> None:
    """Meta's reset time (10 s) replaces the window: margin max(0.25, 0.2) = 0.25 s.

    90 calls 0.01 s apart from t=95 at 90% (1% a call): the oldest (t=95) leaves the window at 105,
    105.25 with the margin; at t=100 that is 5.25 s spread over the 10 calls of headroom and one more.
    """
    clock = Clock(95.0)
    pacer = Pacer(85.0, 3600.0, clock)
    for i in range(90):
        clock.now = 95.0 + i * 0.01
        pacer.record_call()
    clock.now = 100.0
    pacer.observe(Usage(pct=90.0, figure="x-ad-account-usage.acc_id_util_pct", reset_seconds=10.0))
    assert pacer.take_delay() == pytest.approx(5.25 / 11)
    assert pacer.take_delay() == 0.0  # paid once
