"""Meta's usage headers and the pacing computed from them, on a clock the test sets.

The expected numbers are worked out by hand from the rules in `meta/throttle.py`'s docstrings:
the highest figure wins, Meta's wait estimates are minutes, pacing starts at the slowdown
percentage (inclusive), and the pause spreads the time until the oldest own call leaves the
window, plus a safety margin, over the calls left before 100%.
"""

from __future__ import annotations

import json

import pytest

from metaspend_pipeline.meta.throttle import AppPacer, Pacer, Usage, parse_usage, retry_after_seconds

HEADERS = {
    "X-Ad-Account-Usage": json.dumps({"acc_id_util_pct": 42, "reset_time_duration": 300}),
    "X-App-Usage": json.dumps({"call_count": 90, "total_time": 10, "total_cputime": 5}),
    "X-Business-Use-Case-Usage": json.dumps(
        {
            "123": [
                {
                    "type": "ads_insights",
                    "call_count": 55,
                    "total_cputime": 70,
                    "estimated_time_to_regain_access": 2,
                    "reset_time_duration": 9999,  # only the ad account header's reset time counts
                },
                {"type": "ads_management", "call_count": 96, "estimated_time_to_regain_access": 5},
                "not an entry",
            ],
            "456": "not a list",
        }
    ),
    "x-fb-ads-insights-throttle": json.dumps({"app_id_util_pct": 97, "acc_id_util_pct": 12}),
}


def test_the_highest_account_figure_and_the_longest_wait_win() -> None:
    assert parse_usage(HEADERS) == Usage(
        pct=96.0,
        figure="x-business-use-case-usage[123:ads_management].call_count",
        regain_seconds=300.0,  # 5 minutes, the larger of Meta's two estimates
        reset_seconds=300.0,
    )
    assert parse_usage(HEADERS, "account") == parse_usage(HEADERS)


def test_the_app_scope_reads_only_the_app_figures_and_no_wait_estimate() -> None:
    assert parse_usage(HEADERS, "app") == Usage(pct=97.0, figure="x-fb-ads-insights-throttle.app_id_util_pct")
    only_app = {"x-app-usage": json.dumps({"call_count": 12, "total_time": 30})}
    assert parse_usage(only_app, "app") == Usage(pct=30.0, figure="x-app-usage.total_time")
    assert parse_usage(only_app) is None  # the app's figures are not the ad account's


def test_a_business_entry_without_a_type_and_figures_given_as_text() -> None:
    headers = {"x-business-use-case-usage": json.dumps({"9": [{"call_count": "88.5", "total_time": "n/a"}]})}
    assert parse_usage(headers) == Usage(pct=88.5, figure="x-business-use-case-usage[9:?].call_count")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-ad-account-usage": "not json"},
        {"x-ad-account-usage": ""},
        {"x-ad-account-usage": json.dumps([1, 2])},
        {"x-ad-account-usage": json.dumps({"acc_id_util_pct": None, "estimated_time_to_regain_access": 0})},
        {"content-type": "application/json"},
    ],
)
def test_no_usage_figure_is_no_usage(headers: dict[str, str]) -> None:
    assert parse_usage(headers) is None
    assert parse_usage(headers, "app") is None


def test_a_wait_estimate_alone_is_usage_at_zero_percent() -> None:
    headers = {"x-ad-account-usage": json.dumps({"estimated_time_to_regain_access": 1.5})}
    assert parse_usage(headers) == Usage(pct=0.0, figure="none", regain_seconds=90.0)


def test_an_unknown_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="scope must be account or app, got 'business'"):
        parse_usage(HEADERS, "business")


@pytest.mark.parametrize(
    ("usage", "blocked"),
    [
        (Usage(100.0, "x"), True),
        (Usage(99.9, "x"), False),
        (Usage(10.0, "x", regain_seconds=60.0), True),
        (Usage(10.0, "x", regain_seconds=0.0), False),
    ],
)
def test_blocked_at_100_percent_or_when_meta_gives_a_wait(usage: Usage, blocked: bool) -> None:
    assert usage.blocked is blocked


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # 1445412510 - 1445412480
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # already past
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_as_seconds_or_as_an_http_date(value: str, seconds: float | None) -> None:
    assert retry_after_seconds({"Retry-After": value}, now=1445412480.0) == seconds


def test_retry_after_absent_and_against_the_real_clock() -> None:
    assert retry_after_seconds({"x-app-usage": "{}"}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # long past


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_below_the_slowdown_there_is_no_pause() -> None:
    pacer = Pacer(85, 100, Clock())
    pacer.record_call()
    pacer.observe(Usage(84.9, "x"))
    assert pacer.take_delay() == 0.0
    assert pacer.last == Usage(84.9, "x")
    pacer.observe(None)  # an answer without usage headers changes nothing
    assert pacer.last == Usage(84.9, "x")


def test_pacing_starts_at_the_slowdown_percentage_and_is_paid_once() -> None:
    clock = Clock()
    pacer = Pacer(85, 100, clock)
    pacer.record_call()
    clock.now = 10.0
    pacer.observe(Usage(85.0, "x"))
    # step unknown: 1% per call, 15 calls left; one own call of 1% cannot explain 85%, so others'
    # calls count too and the whole window (100 s) is spread over the 15 calls left, plus this one
    assert pacer.take_delay() == pytest.approx(100 / 16)
    assert pacer.take_delay() == 0.0


def test_the_pause_spreads_the_time_until_the_oldest_own_call_leaves_the_window() -> None:
    clock = Clock()
    pacer = Pacer(85, 1000, clock)
    pacer.observe(Usage(80.0, "x", reset_seconds=100.0))
    for second in range(9):  # 9 calls of 10% each, at 0..8 s
        clock.now = float(second)
        pacer.record_call()
    clock.now = 10.0
    pacer.observe(Usage(90.0, "x", reset_seconds=100.0))
    # the step is 10% (80 -> 90), 1 call left; the oldest call (0 s) leaves Meta's 100 s window at
    # 100 s, plus a margin of max(0.25 s, 2% of 100 s) = 2 s: 92 s from now, over 1 + 1 calls
    assert pacer.take_delay() == pytest.approx(46.0)


def test_the_margin_is_at_least_a_quarter_second_and_a_full_window_is_the_fallback() -> None:
    clock = Clock()
    pacer = Pacer(50, 10, clock)  # a 10 s window: 2% is 0.2 s, less than the 0.25 s floor
    pacer.observe(Usage(40.0, "x"))
    clock.now = 1.0
    pacer.record_call()
    clock.now = 2.0
    pacer.observe(Usage(60.0, "x"))  # step 20%: one own call is 20%, far from 60%: others' calls count
    assert pacer.take_delay() == pytest.approx(10 / 3)  # the full window over 2 calls left + 1
    clock.now = 3.0
    pacer.record_call()
    pacer.record_call()
    clock.now = 4.0
    pacer.observe(Usage(60.0, "x"))  # 3 own calls of 20% = 60%: the oldest (1 s) leaves at 11 s
    assert pacer.take_delay() == pytest.approx((1 + 10 + 0.25 - 4) / 3)


def test_calls_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    pacer = Pacer(50, 10, clock)
    pacer.observe(Usage(25.0, "x"))
    pacer.record_call()  # at 0 s: exactly one window before the observation, so out of it
    clock.now = 5.0
    pacer.record_call()
    clock.now = 10.0
    pacer.observe(Usage(50.0, "x"))  # step 25%, 2 calls left; 1 own call of 25% is not 50%: the full window
    assert pacer.take_delay() == pytest.approx(10 / 3)


def test_a_throttle_waits_as_long_as_meta_says() -> None:
    pacer = Pacer(85, 3600, Clock())
    pacer.observe(Usage(20.0, "x", regain_seconds=120.0))
    assert pacer.take_delay() == 120.0


def test_the_app_pacer_spaces_every_caller_once_the_app_is_busy() -> None:
    clock = Clock()
    app = AppPacer(85, 110, clock)
    assert app.reserve() == 0.0  # idle: the slots are free
    assert app.last is None
    app.observe(Usage(90.0, "x-app-usage.call_count"))
    # 1 own call cannot explain 90%: the full window, 110 s, over 10 calls left + 1 = 10 s apart,
    # counted from the last call made (at 0 s)
    assert app.last == Usage(90.0, "x-app-usage.call_count")
    clock.now = 1.0
    assert app.reserve() == pytest.approx(9.0)  # the slot at 10 s
    assert app.reserve() == pytest.approx(19.0)  # another thread: the slot at 20 s
    clock.now = 25.0
    assert app.reserve() == pytest.approx(5.0)  # the slot at 30 s
    app.observe(None)  # an answer without the app's figures changes nothing
    clock.now = 26.0
    assert app.reserve() == pytest.approx(14.0)  # the slot at 40 s
    app.observe(Usage(50.0, "x-app-usage.call_count"))  # below the slowdown again: no spacing
    assert app.reserve() == 0.0
    assert app.reserve() == 0.0


def test_own_calls_explain_the_usage_within_a_quarter_of_it() -> None:
    clock = Clock()
    pacer = Pacer(30, 100, clock)
    pacer.observe(Usage(30.0, "x"))
    for second in (0.0, 1.0, 2.0):
        clock.now = second
        pacer.record_call()
    clock.now = 5.0
    pacer.observe(Usage(40.0, "x"))
    # 3 own calls of 10% = 30%, off by 10 = exactly a quarter of 40%: still explained by them, so the
    # oldest call (0 s) leaving the window at 100 s + a 2 s margin counts: 97 s over 6 calls left + 1
    assert pacer.take_delay() == pytest.approx(97 / 7)


def test_a_pause_shorter_than_a_second_is_not_rounded_up() -> None:
    clock = Clock()
    pacer = Pacer(50, 10, clock)
    pacer.observe(Usage(25.0, "x"))
    clock.now = 0.5
    pacer.record_call()
    clock.now = 5.0
    pacer.record_call()
    clock.now = 10.0
    pacer.observe(Usage(50.0, "x"))  # 2 own calls of 25%: the oldest leaves at 0.5 + 10 + 0.25 s
    assert pacer.take_delay() == pytest.approx(0.75 / 3)
