"""Meta's usage headers and the pacing computed from them, on hand-computed numbers.

The pacer takes its clock as an argument: these tests hand it one they move themselves, so the
expected pauses are exact (the client-level behaviour is tested against the sandbox in
meta/test_client.py).

Below, a pacer before any answer, 100% without a wait estimate, a malformed business entry, and the
app pacer's own calls on the clock it is given.
"""

from __future__ import annotations

import json

import pytest

from metaspend_pipeline.meta.throttle import AppPacer, Pacer, Usage, parse_usage


class Clock:
    def __init__(self, now: float = 0.0) -> None:
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


# --- a pacer before any answer, 100% without a wait estimate, a malformed business entry, the app pacer's clock ---


def test_nothing_is_owed_before_meta_has_reported_any_usage() -> None:
    """A client's first call goes at once; so do any number of calls at one instant while the
    app's pacer has heard of no usage."""
    assert Pacer(85, 100, Clock()).take_delay() == 0.0
    app = AppPacer(85, 100, Clock(5.0))
    assert [app.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_at_100_percent_without_a_wait_estimate_the_time_until_the_oldest_call_leaves_is_waited_at_once() -> None:
    """90% and then 100%: 10% a call. Ten own calls at 0..9 s explain the 100%; at 10 s nothing is
    left, so the whole time until the oldest (0 s) leaves the 100 s window, plus the margin of
    max(0.25 s, 2% of 100 s) = 2 s, is one pause: 0 + 100 + 2 - 10 = 92 s."""
    clock = Clock()
    pacer = Pacer(85, 100, clock)
    pacer.observe(Usage(90.0, "x"))
    for second in range(10):
        clock.now = float(second)
        pacer.record_call()
    clock.now = 10.0
    pacer.observe(Usage(100.0, "x"))
    assert pacer.take_delay() == pytest.approx(92.0)


def test_a_business_entry_that_is_not_a_list_is_ignored() -> None:
    headers = {
        "X-Business-Use-Case-Usage": json.dumps(
            {"1": 7, "2": None, "3": [{"type": "ads_insights", "call_count": 50}], "4": {"call_count": 99}}
        )
    }
    assert parse_usage(headers) == Usage(pct=50.0, figure="x-business-use-case-usage[3:ads_insights].call_count")


def test_the_app_pacer_counts_its_own_calls_on_the_clock_it_is_given() -> None:
    """Two calls reserved at 0 s and 1 s; Meta then says 10% and 20%: 10% a call, explained by the
    two own calls. The oldest (0 s) leaves the 100 s window at 100 s, plus a 2 s margin: 101 s from
    1 s, over the 8 calls left and this one = 101 / 9 s apart, from the last call (1 s)."""
    clock = Clock()
    app = AppPacer(20, 100, clock)
    assert app.reserve() == 0.0
    app.observe(Usage(10.0, "x-app-usage.call_count"))  # below the slowdown: no spacing
    clock.now = 1.0
    assert app.reserve() == 0.0
    app.observe(Usage(20.0, "x-app-usage.call_count"))
    clock.now = 2.0
    assert app.reserve() == pytest.approx(1.0 + 101 / 9 - 2.0)


def test_usage_heard_before_any_call_of_the_app_pacer_spaces_from_its_first_call() -> None:
    """Another client of the app reported 90% before this pacer made a call: the full 110 s window
    over the 10 calls left and one more is 10 s between calls, the first of which goes at once."""
    clock = Clock(3.0)
    app = AppPacer(85, 110, clock)
    app.observe(Usage(90.0, "x-app-usage.call_count"))
    assert app.reserve() == 0.0
    assert app.reserve() == pytest.approx(10.0)
