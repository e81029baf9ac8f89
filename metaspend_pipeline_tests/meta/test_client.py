"""The Graph API client against the sandbox, over real loopback HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from decimal import Decimal

import pytest
import requests

from metaspend_pipeline.meta.client import MetaClient, appsecret_proof
from metaspend_pipeline.meta.errors import (
    MetaApiError,
    MetaDataError,
    MetaPermissionError,
    MetaReportJobError,
    MetaRetriesExhaustedError,
    MetaTokenError,
)
from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline_tests.conftest import SANDBOX_SEED, Listener
from metaspend_pipeline_tests.dates import day, iso

ACCOUNT = "act_1000000001"
SINCE, UNTIL = day(1), day(14)


class Sleeps:
    """Records the waits the client asks for, then waits them (shortened by the settings)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        import time

        self.calls.append(seconds)
        time.sleep(seconds)


def token_of(sandbox: Sandbox, organization: str = "demo-org-1") -> str:
    return next(o.token for o in sandbox.world.organizations if o.organization_id == organization)


def as_truth(rows: list[InsightRow]) -> list[dict[str, object]]:
    return [
        {
            "date": r.date.isoformat(),
            "campaign_id": r.campaign_id,
            "adset_id": r.adset_id,
            "ad_id": r.ad_id,
            "currency": r.currency,
            "spend": Decimal(r.spend),
            "impressions": r.impressions,
            "clicks": r.clicks,
        }
        for r in rows
    ]


def truth(sandbox: Sandbox, level: str, since: dt.date = SINCE, until: dt.date = UNTIL, account: str = ACCOUNT):
    return [{**r, "spend": Decimal(str(r["spend"]))} for r in sandbox.world.truth(account, level, since, until)]


def insight_requests(sandbox: Sandbox) -> list[dict[str, object]]:
    return [r for r in sandbox.requests_log() if "insights" in str(r["path"])]


@pytest.mark.parametrize("level", ["account", "campaign", "adset", "ad"])
@pytest.mark.parametrize("use_async", [False, True])
def test_full_fetch_equals_the_sandbox_truth(
    sandbox: Sandbox, api_settings: MetaApiSettings, level: str, use_async: bool
) -> None:
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.insights(ACCOUNT, level, SINCE, UNTIL, use_async=use_async))
    assert as_truth(rows) == truth(sandbox, level)
    assert client.stats.rows == len(rows)


def test_archived_and_deleted_spend_is_included(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """Without the effective-status filter Meta drops archived and deleted objects; the client sends it."""
    token = token_of(sandbox)
    rows = list(MetaClient(token, api_settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    hidden = {a.id for a in sandbox.world.accounts[ACCOUNT].ads if a.effective_status in {"ARCHIVED", "DELETED"}}
    hidden_spend = sum(r.spend for r in rows if r.ad_id in hidden)
    assert hidden_spend > 0

    unfiltered = requests.get(
        f"{api_settings.base_url}/{ACCOUNT}/insights",
        params={
            "level": "ad",
            "fields": "spend,ad_id",
            "time_increment": "1",
            "limit": "1000",
            "time_range": json.dumps({"since": str(SINCE), "until": str(UNTIL)}),
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["data"]
    assert not {r["ad_id"] for r in unfiltered} & hidden
    assert sum(Decimal(r["spend"]) for r in unfiltered) == sum(r.spend for r in rows) - hidden_spend


def test_paging_follows_next_with_the_token_in_the_header_only(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    settings = dataclasses.replace(api_settings, page_size=37)
    client = MetaClient(token_of(sandbox), settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    pages = -(-len(rows) // 37)
    log = insight_requests(sandbox)
    assert len(log) == pages == client.stats.pages
    assert all(r["token_in_header"] and not r["token_in_query"] for r in log)
    assert all(r["params"]["limit"] == "37" for r in log)


def test_rows_stream_page_by_page(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    client = MetaClient(token_of(sandbox), api_settings)
    stream = client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False)
    next(stream)
    assert client.stats.pages == 1
    assert len(insight_requests(sandbox)) == 1


THROTTLES = [
    {"code": 4, "subcode": 1504022},
    {"code": 17, "is_transient": True},
    {"code": 32},
    {"code": 613, "subcode": 1487742},
    {"code": 80000},
    {"code": 80004},
    {"code": 80014},
]


@pytest.mark.parametrize("throttle", THROTTLES, ids=lambda t: str(t["code"]))
def test_throttle_with_a_regain_estimate_waits_and_succeeds(
    sandbox: Sandbox, api_settings: MetaApiSettings, throttle: dict[str, object]
) -> None:
    sandbox.add_faults([{"kind": "throttle", "match": "insights", "regain_minutes": 2, "times": 2, **throttle}])
    sleeps = Sleeps()
    settings = dataclasses.replace(api_settings, retry_max_wait=0.05)
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    rows = list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "campaign")
    assert client.stats.throttle_events == 2
    # Meta said 2 minutes; the settings cap single waits at 0.05 s, so exactly the cap was waited
    assert sleeps.calls[:2] == [0.05, 0.05]


def test_throttle_wait_follows_the_estimate_below_the_cap(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "throttle", "match": "insights", "regain_minutes": 1}])
    sleeps = Sleeps()
    settings = dataclasses.replace(api_settings, retry_max_wait=600.0, retry_budget_seconds=600.0)

    def record_only(seconds: float) -> None:
        sleeps.calls.append(seconds)

    list(MetaClient(token_of(sandbox), settings, sleep=record_only).insights(ACCOUNT, "campaign", SINCE, SINCE))
    assert 60.0 <= sleeps.calls[0] <= 66.0  # the estimate, plus at most 10% jitter


def test_429_honours_retry_after(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "http429", "match": "insights", "retry_after": 0.2}])
    sleeps = Sleeps()
    settings = dataclasses.replace(api_settings, retry_max_wait=1.0)
    rows = list(MetaClient(token_of(sandbox), settings, sleep=sleeps).insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "campaign")
    assert 0.2 <= sleeps.calls[0] <= 0.22


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "server_error", "code": 1},
        {"kind": "server_error", "code": 99},
        {"kind": "server_error", "code": 2, "http_status": 400, "is_transient": True},
        {"kind": "server_error", "code": 1, "http_status": 503},
        {"kind": "malformed"},
        {"kind": "reset", "skip": 2},
        {"kind": "reset_mid_body", "skip": 2},
        {"kind": "slow", "seconds": 2.5, "skip": 1},
    ],
    ids=["code1", "code99", "code2-transient", "503", "malformed", "reset-mid-pagination", "reset-mid-body", "timeout"],
)
def test_transient_failures_recover_within_the_retry_budget(
    sandbox: Sandbox, api_settings: MetaApiSettings, fault: dict[str, object]
) -> None:
    sandbox.add_faults([{"match": "insights", "times": 2, **fault}])
    settings = dataclasses.replace(api_settings, page_size=50, timeout_seconds=1.0)
    client = MetaClient(token_of(sandbox), settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    assert as_truth(rows) == truth(sandbox, "ad")  # no page lost, none twice
    assert client.stats.retries == 2


def test_reduce_the_amount_of_data_halves_the_page(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.configure(max_page_size=30)
    settings = dataclasses.replace(api_settings, page_size=100)
    rows = list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    assert as_truth(rows) == truth(sandbox, "ad")
    limits = [r["params"]["limit"] for r in insight_requests(sandbox)]
    assert limits[:3] == ["100", "50", "25"]
    assert set(limits[2:]) == {"25"}


def test_failures_that_do_not_stop_fail_with_the_attempt_count(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "server_error", "code": 1, "match": "insights", "times": 100}])
    settings = dataclasses.replace(api_settings, max_retries=3)
    with pytest.raises(MetaRetriesExhaustedError, match=r"ad account act_1000000001.*gave up after 4 attempts"):
        list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert len(insight_requests(sandbox)) == 4


def test_time_budget_stops_retrying(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "throttle", "match": "insights", "times": 100, "regain_minutes": 1}])
    settings = dataclasses.replace(api_settings, max_retries=50, retry_max_wait=0.05, retry_budget_seconds=0.12)
    with pytest.raises(MetaRetriesExhaustedError, match="retry budget"):
        list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert len(insight_requests(sandbox)) == 3


@pytest.mark.parametrize("kind", ["token_expired", "token_invalid"])
def test_token_errors_raise_after_one_request(sandbox: Sandbox, api_settings: MetaApiSettings, kind: str) -> None:
    sandbox.add_faults([{"kind": kind, "times": 5}])
    client = MetaClient(token_of(sandbox), api_settings)
    with pytest.raises(MetaTokenError, match="code 190") as info:
        list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert "needs re-authorisation" in str(info.value)
    assert info.value.error is not None and info.value.error.code == 190  # Meta's error, for the caller to read
    assert len(sandbox.requests_log()) == 1


def test_an_expired_token_is_refused_by_the_sandbox_itself(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_token("EAAexpired" + "0" * 20, "demo-org-1", expires_in=-1)
    with pytest.raises(MetaTokenError, match="190/463"):
        MetaClient("EAAexpired" + "0" * 20, api_settings).ad_account(ACCOUNT)


def test_permission_and_unknown_account_errors_are_not_retried(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "permission", "match": "insights"}])
    with pytest.raises(MetaPermissionError, match="ads_read"):
        list(MetaClient(token_of(sandbox), api_settings).insights(ACCOUNT, "campaign", SINCE, UNTIL))
    with pytest.raises(MetaPermissionError, match=r"act_2000000001.*cannot read it"):
        list(MetaClient(token_of(sandbox), api_settings).insights("act_2000000001", "campaign", SINCE, UNTIL))
    assert len(insight_requests(sandbox)) == 2


@pytest.mark.parametrize("today", [dt.date(2024, 3, 1), dt.date(2031, 1, 31)])
def test_the_37_month_limit_follows_the_sandbox_clock_to_the_day(api_settings: MetaApiSettings, today: dt.date) -> None:
    """A sandbox whose clock the test sets: the first day 37 months back is served, the day before is not."""
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC).timestamp()
    first = dt.date(today.year - 3, today.month, 1) - dt.timedelta(days=1)  # 37 months back: the month before
    first = first.replace(day=min(today.day, 28))
    server = SandboxServer(Sandbox(SANDBOX_SEED, clock=lambda: noon)).start()
    try:
        client = MetaClient(token_of(server.sandbox), dataclasses.replace(api_settings, graph_api_url=server.url))
        rows = list(client.insights(ACCOUNT, "account", first, first))
        assert as_truth(rows) == truth(server.sandbox, "account", first, first)
        before = first - dt.timedelta(days=1)
        with pytest.raises(MetaApiError, match=r"3018.*37 months"):
            list(client.insights(ACCOUNT, "account", before, before))
    finally:
        server.stop()


def test_the_37_month_limit_is_a_clear_error(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    old = dt.date.today().replace(day=1) - dt.timedelta(days=38 * 31)
    with pytest.raises(MetaApiError, match=r"3018.*37 months"):
        list(MetaClient(token_of(sandbox), api_settings).insights(ACCOUNT, "campaign", old, old))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ad_id", None, "field ad_id is missing"),
        ("spend", "12,50", "field spend '12,50' is not a non-negative amount in plain digits"),
        ("clicks", "7.5", "field clicks '7.5' is not a whole number"),
        ("date_start", iso(0), f"outside the requested range {iso(1)}..{iso(14)}"),
    ],
)
def test_bad_rows_are_errors_naming_account_date_and_field(
    sandbox: Sandbox, api_settings: MetaApiSettings, field: str, value: str | None, message: str
) -> None:
    # every attempt gets the bad row: on a loaded machine the first can time out (2 s) and be retried
    sandbox.add_faults([{"kind": "corrupt_row", "match": "insights", "field": field, "value": value, "times": 5}])
    with pytest.raises(MetaDataError, match=message) as info:
        list(MetaClient(token_of(sandbox), api_settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    assert "ad account act_1000000001, ad row of 20" in str(info.value)


def test_async_report_runs_complete(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL))  # 14 days at ad level: async by default
    assert as_truth(rows) == truth(sandbox, "ad")
    assert client.stats.async_jobs == 1
    posts = [r for r in sandbox.requests_log() if r["method"] == "POST"]
    assert len(posts) == 1


def test_a_failed_report_run_is_retried_once(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.add_faults([{"kind": "job_failed", "match": "insights"}])
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "ad")
    assert client.stats.async_jobs == 2


def test_a_report_run_that_keeps_failing_is_split(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.configure(async_fail_above_days=4)
    settings = dataclasses.replace(api_settings, async_min_days=1)
    client = MetaClient(token_of(sandbox), settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "ad")
    ranges = [json.loads(r["params"]["time_range"]) for r in sandbox.requests_log() if r["method"] == "POST"]
    days = [(dt.date.fromisoformat(r["until"]) - dt.date.fromisoformat(r["since"])).days + 1 for r in ranges]
    assert days == [14, 14, 7, 7, 3, 4, 7, 7, 3, 4]
    # 14 days in halves of 7, each 7 into 3 and 4; each split says why, what and into what
    splits = [r.getMessage() for r in caplog.records if "splitting" in r.getMessage()]
    # Meta's reasons (the fields a failed run carries since v25.0) are quoted
    why = (
        "error_code 1, error_subcode 1815107: An unknown error occurred while generating the report.; "
        "Report could not be generated: Try again later, or ask for a shorter date range."
    )
    assert splits == [
        f"ad account {ACCOUNT}, ad insights {a}..{b}: report run ended with Job Failed ({why}) twice; splitting "
        f"into {a}..{m} and {m + dt.timedelta(days=1)}..{b}"
        for a, m, b in ((day(1), day(7), day(14)), (day(1), day(3), day(7)), (day(8), day(10), day(14)))
    ]


def test_a_failed_report_run_s_error_fields_are_in_the_message(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """v25.0: `error_code` (a signed int), `error_message` and the subcode fields of a failed run; a run
    that failed without them (a skipped one) says its status alone."""
    fault = {"kind": "job_failed", "match": "insights", "times": 2, "error_code": -2, "error_subcode": 2446289}
    fault |= {"error_message": "Job timed out", "error_user_title": "", "error_user_msg": "Reduce the date range"}
    sandbox.add_faults([fault])
    client = MetaClient(token_of(sandbox), api_settings)
    with pytest.raises(MetaReportJobError) as info:
        list(client.insights(ACCOUNT, "ad", SINCE, SINCE, use_async=True))
    assert str(info.value) == (
        f"ad account {ACCOUNT}, ad insights {SINCE}: report run ended with Job Failed (error_code -2, "
        "error_subcode 2446289: Job timed out; Reduce the date range) twice, even for a single day"
    )
    polls = [r for r in sandbox.requests_log() if r["endpoint"] == "job"]
    assert polls and all("error_code" in r["params"]["fields"].split(",") for r in polls)
    sandbox.add_faults([{"kind": "job_skipped", "match": "insights", "times": 2}])
    with pytest.raises(MetaReportJobError, match=r"ended with Job Skipped twice"):
        list(client.insights(ACCOUNT, "ad", SINCE, SINCE, use_async=True))


def test_appsecret_proof_is_sent_and_correct(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.configure(require_appsecret_proof=True)
    secret = sandbox.config.app_secret
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=secret)
    rows = list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "ad", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "ad")
    log = sandbox.requests_log()
    assert len(insight_requests(sandbox)) >= 1
    assert [r["appsecret_proof"] for r in log] == [True] * len(log)

    wrong = dataclasses.replace(settings, app_secret="not-the-secret")
    with pytest.raises(MetaApiError, match="Invalid appsecret_proof"):
        MetaClient(token_of(sandbox), wrong).ad_account(ACCOUNT)
    without = dataclasses.replace(settings, app_secret=None)
    with pytest.raises(MetaApiError, match="require an appsecret_proof"):
        MetaClient(token_of(sandbox), without).ad_account(ACCOUNT)
    # RFC 4231 test case 2: HMAC-SHA256 keyed by the app secret over the token
    assert (
        appsecret_proof("what do ya want for nothing?", "Jefe")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_usage_headers_slow_the_client_before_meta_blocks(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """20 calls per 2 s allowed; ~30 pages wanted: pacing keeps the client under the limit."""
    sandbox.configure(rate_limit_calls=20, rate_limit_window_seconds=2.0)
    settings = dataclasses.replace(api_settings, page_size=7, retry_max_wait=2.0)
    client = MetaClient(token_of(sandbox), settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    assert as_truth(rows) == truth(sandbox, "ad")
    assert client.stats.requests > 20
    assert client.stats.pacing_wait_seconds > 0
    assert client.stats.throttle_events == 0


def test_a_real_rate_limit_throttle_is_waited_out(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """Another caller used up the ad account's calls: the first answer is Meta's 80000 throttle.

    The window (2 s) leaves a loaded machine time between the other caller's calls and ours; the
    wait is capped just above it, so one wait is enough."""
    sandbox.configure(rate_limit_calls=5, rate_limit_window_seconds=2.0)
    token = token_of(sandbox)
    for _ in range(5):
        requests.get(f"{api_settings.base_url}/{ACCOUNT}", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    settings = dataclasses.replace(api_settings, page_size=50, retry_max_wait=2.1)
    client = MetaClient(token, settings)
    rows = list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "campaign")
    assert client.stats.throttle_events == 1
    assert client.stats.throttle_wait_seconds == pytest.approx(2.1)
    assert [r["status"] for r in insight_requests(sandbox)][:2] == [400, 200]


def test_ad_account_metadata_is_cached_and_accounts_are_discovered(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    client = MetaClient(token_of(sandbox, "demo-org-3"), api_settings)
    india = client.ad_account("act_3000000001")
    assert (india.currency, india.timezone_name, india.timezone_offset_hours_utc) == (
        "INR",
        "Asia/Kolkata",
        Decimal("5.5"),
    )
    client.ad_account("act_3000000001")
    assert len(sandbox.requests_log()) == 1
    assert [a.id for a in client.ad_accounts()] == ["act_3000000001", "act_3000000002"]


def test_zero_decimal_currency_rows(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    client = MetaClient(token_of(sandbox, "demo-org-3"), api_settings)
    rows = list(client.insights("act_3000000002", "campaign", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "campaign", account="act_3000000002")
    assert {r.currency for r in rows} == {"JPY"}
    assert all(r.spend == r.spend.to_integral_value() for r in rows)


def test_debug_and_exchange_token(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    settings = dataclasses.replace(api_settings, app_id=sandbox.config.app_id, app_secret=sandbox.config.app_secret)
    client = MetaClient(token_of(sandbox), settings)
    info = client.debug_token()
    assert info.is_valid
    assert info.expires_at is None
    assert "ads_read" in info.scopes
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    extended = client.exchange_token(now=now)
    assert extended.expires_at == now + dt.timedelta(seconds=sandbox.config.token_lifetime_seconds)
    renewed = MetaClient(extended.access_token, settings)
    assert renewed.debug_token().expires_at is not None
    assert renewed.ad_account(ACCOUNT).currency == "USD"


def test_no_secret_in_logs_or_errors(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """Fetches that hit faults and errors: the token, its proof and the app secret appear nowhere."""
    token = token_of(sandbox)
    secret = sandbox.config.app_secret
    proof = appsecret_proof(token, secret)
    settings = dataclasses.replace(
        api_settings, app_id=sandbox.config.app_id, app_secret=secret, page_size=40, max_retries=6
    )
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    sandbox.add_faults(
        [
            {"kind": "reset", "match": "insights", "skip": 1},
            {"kind": "throttle", "match": "insights"},
            {"kind": "server_error", "match": "insights", "code": 2, "is_transient": True},
            {"kind": "malformed", "match": "insights"},
            {"kind": "reduce_data", "match": "insights"},
        ]
    )
    client = MetaClient(token, settings)
    list(client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    texts.append(repr(client))
    for fault in (
        {"kind": "server_error", "times": 10},
        {"kind": "token_expired"},
        {"kind": "permission"},
        {"kind": "unknown_object"},
    ):
        sandbox.add_faults([fault])
        with pytest.raises(MetaApiError) as info:
            list(MetaClient(token, settings).insights(ACCOUNT, "campaign", SINCE, UNTIL))
        texts += [str(info.value), repr(info.value)]
        sandbox.reset()
    sandbox.add_faults([{"kind": "server_error", "times": 100}])
    for call in (lambda c: c.debug_token(), lambda c: c.exchange_token()):
        with pytest.raises(MetaApiError) as info:
            call(MetaClient(token, settings))
        texts.append(str(info.value))
    captured = capfd.readouterr()
    texts += [caplog.text, captured.out, captured.err]
    everything = "\n".join(texts)
    assert "attempt" in everything  # the retries were logged
    for secret_value in (token, proof, secret, f"{sandbox.config.app_id}|{secret}"):
        assert secret_value not in everything


def test_faults_can_be_set_when_the_sandbox_starts(api_settings: MetaApiSettings) -> None:
    from metaspend_pipeline.sandbox.server import SandboxServer

    sandbox = Sandbox(7, faults=[{"kind": "server_error", "match": "insights", "times": 2}])
    with SandboxServer(sandbox) as server:
        settings = dataclasses.replace(api_settings, graph_api_url=server.url)
        client = MetaClient(token_of(sandbox), settings)
        rows = list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL))
    assert as_truth(rows) == truth(sandbox, "campaign")
    assert client.stats.retries == 2


@pytest.mark.parametrize("where", ["another port", "another host name"])
def test_paging_next_on_a_foreign_host_is_refused_without_sending_the_token(
    sandbox: Sandbox, api_settings: MetaApiSettings, listener: Listener, where: str
) -> None:
    """A `next` URL that leaves the Graph API's scheme and host is not followed: the token stays home.

    Another port: a listener that records every byte; another host name (localhost for 127.0.0.1):
    the sandbox itself, whose log shows whether anything came back to it under that name."""
    sandbox_port = api_settings.graph_api_url.rsplit(":", 1)[1].split("/")[0]
    foreign = listener.url if where == "another port" else f"http://localhost:{sandbox_port}"
    sandbox.add_faults([{"kind": "foreign_next", "match": "insights", "base_url": foreign}])
    settings = dataclasses.replace(api_settings, page_size=10)
    with pytest.raises(MetaApiError, match=f"paging.next points at {foreign}.*refusing to send the token") as info:
        list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=False))
    assert len(insight_requests(sandbox)) == 1  # the first page only
    assert token_of(sandbox) not in str(info.value)
    assert (listener.connections, listener.received) == (0, [])
    listener.assert_records_what_reaches_it()


@pytest.mark.parametrize(("retry_after", "regain_minutes", "largest"), [(1, 2, 120.0), (150, 1, 150.0)])
def test_a_throttle_waits_the_largest_of_metas_wait_hints(
    sandbox: Sandbox, api_settings: MetaApiSettings, retry_after: int, regain_minutes: int, largest: float
) -> None:
    """Retry-After, estimated_time_to_regain_access and the reset time disagree: the longest one wins."""
    sandbox.add_faults(
        [{"kind": "throttle", "match": "insights", "regain_minutes": regain_minutes, "retry_after": retry_after}]
    )
    waits: list[float] = []
    settings = dataclasses.replace(api_settings, retry_max_wait=600.0, retry_budget_seconds=600.0)
    client = MetaClient(token_of(sandbox), settings, sleep=waits.append)
    rows = list(client.insights(ACCOUNT, "campaign", SINCE, SINCE))
    assert as_truth(rows) == truth(sandbox, "campaign", SINCE, SINCE)
    assert client.stats.throttle_events == 1
    throttle_waits = [w for w in waits if w >= 1.0]
    assert len(throttle_waits) == 1
    assert largest <= throttle_waits[0] <= largest * 1.1  # the hint, plus at most 10% jitter


def test_a_report_run_that_never_finishes_times_out_with_a_clear_error(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """The sandbox keeps the report running for an hour; the client gives up after its timeout, twice."""
    import threading
    import time

    sandbox.configure(async_job_seconds=3600.0)
    settings = dataclasses.replace(
        api_settings, async_timeout_seconds=0.3, async_poll_initial=0.02, async_poll_max=0.05
    )
    outcome: list[BaseException | None] = []

    def fetch() -> None:
        try:
            list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "ad", SINCE, SINCE, use_async=True))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the client was still polling a report run that never finishes after 20 s"
    assert time.monotonic() - started < 10
    from metaspend_pipeline.meta.errors import MetaReportJobError

    error = outcome[0]
    assert isinstance(error, MetaReportJobError)
    assert str(error) == (
        f"ad account {ACCOUNT}, ad insights {SINCE}: report run ended with no result within 0.3s "
        "(META_ASYNC_TIMEOUT_SECONDS; last status 'Job Not Started') twice, even for a single day"
    )
    assert [r["method"] for r in insight_requests(sandbox)] == ["POST", "POST"]


# --- the parsers and the client's own rules, exactly (mutation testing, docs/development.md) -----------


def test_a_token_with_white_space_inside_or_none_at_all_is_refused() -> None:
    from metaspend_pipeline.meta.client import MetaClient as Client

    settings = MetaApiSettings(graph_api_url="http://127.0.0.1:9")
    for token, message in (
        ("", "MetaClient needs an access token"),
        ("   ", "MetaClient needs an access token"),
        ("EAA abc", "the access token contains white space or control characters; store it again"),
        ("EAA\x00abc", "the access token contains white space or control characters; store it again"),
    ):
        with pytest.raises(MetaApiError) as info:
            Client(token, settings)
        assert str(info.value) == message
    client = Client("  EAAtrimmed0000\n", settings)
    assert repr(client) == "MetaClient(http://127.0.0.1:9/v26.0)"


def test_paging_next_on_another_host_or_scheme_is_refused_and_ours_is_stripped_of_secrets() -> None:
    client = MetaClient("EAAnext000000", MetaApiSettings(graph_api_url="http://127.0.0.1:9"))
    url, query = client._follow(
        "http://127.0.0.1:9/v26.0/act_1/insights?access_token=EAAnext000000&appsecret_proof=abc&after=XYZ&limit=500&empty=",
        25,
        "ctx",
    )
    assert (url, query) == ("http://127.0.0.1:9/v26.0/act_1/insights", {"after": "XYZ", "limit": "25", "empty": ""})
    for foreign, where in (
        ("http://evil.example:9/v26.0/act_1/insights?after=1", "http://evil.example:9"),
        ("http://127.0.0.1:10/v26.0/act_1/insights?after=1", "http://127.0.0.1:10"),
        ("https://127.0.0.1:9/v26.0/act_1/insights?after=1", "https://127.0.0.1:9"),
    ):
        with pytest.raises(MetaApiError) as info:
            client._follow(foreign, 25, "ad account act_1, ad insights")
        assert str(info.value) == (
            f"ad account act_1, ad insights: paging.next points at {where}, not the Graph API at "
            "http://127.0.0.1:9; refusing to send the token there"
        )


def test_transient_failures_back_off_exponentially_with_jitter_up_to_the_cap(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    import random

    settings = dataclasses.replace(api_settings, retry_base_delay=0.004, retry_max_wait=0.012, max_retries=5)
    sandbox.add_faults([{"kind": "server_error", "match": "act_1000000001", "times": 3}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps, rng=random.Random(11))
    assert client.ad_account(ACCOUNT).currency == "USD"
    same = random.Random(11)
    # 0.004 x 2^attempt, capped at 0.012, times a jitter in [0.5, 1)
    assert sleeps.calls == [
        0.004 * same.uniform(0.5, 1.0),
        0.008 * same.uniform(0.5, 1.0),
        0.012 * same.uniform(0.5, 1.0),
    ]
    assert (client.stats.retries, client.stats.requests) == (3, 4)


def test_giving_up_says_how_many_attempts_and_the_last_failure(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    settings = dataclasses.replace(api_settings, max_retries=2)
    sandbox.add_faults([{"kind": "server_error", "match": "act_1000000001", "times": 10, "code": 2}])
    client = MetaClient(token_of(sandbox), settings)
    with pytest.raises(MetaRetriesExhaustedError) as info:
        client.ad_account(ACCOUNT)
    assert re.fullmatch(
        r"ad account act_1000000001: gave up after 3 attempts \(META_MAX_RETRIES=2\); "
        r"last failure: HTTP 500, code 2: Service temporarily unavailable \(fbtrace_id \w+\)",
        str(info.value),
    )
    assert (client.stats.requests, client.stats.retries) == (3, 2)

    budget = dataclasses.replace(api_settings, retry_budget_seconds=0.0001, retry_base_delay=1.0, retry_max_wait=1.0)
    client = MetaClient(token_of(sandbox), budget, sleep=lambda _: pytest.fail("no wait past the budget"))
    with pytest.raises(MetaRetriesExhaustedError) as info:
        client.ad_account(ACCOUNT)
    text = str(info.value)
    assert text.startswith("ad account act_1000000001: waiting ")
    assert re.search(
        r"\ds more would pass the retry budget of 0s \(META_RETRY_BUDGET_SECONDS\); "
        r"last failure: HTTP 500, code 2: Service temporarily unavailable \(fbtrace_id \w+\)$",
        text,
    )


def test_permanent_errors_say_what_to_do() -> None:
    from metaspend_pipeline.meta.client import _permanent
    from metaspend_pipeline.meta.errors import GraphError

    def permanent(http: int, code: int | None, subcode: int | None = None) -> tuple[type, str]:
        meta = GraphError(http, "msg", code, subcode)
        error = _permanent(meta, "ctx")
        assert error.error is meta  # Meta's own error travels with it
        return type(error), str(error)

    assert permanent(400, 100, 33) == (
        MetaPermissionError,
        "ctx: HTTP 400, code 100/33: msg (the ad account does not exist or this token cannot read it)",
    )
    lacks = "(the token lacks a permission, e.g. ads_read)"
    assert permanent(400, 10) == (MetaPermissionError, f"ctx: HTTP 400, code 10: msg {lacks}")
    assert permanent(400, 200) == (MetaPermissionError, f"ctx: HTTP 400, code 200: msg {lacks}")
    assert permanent(400, 299) == (MetaPermissionError, f"ctx: HTTP 400, code 299: msg {lacks}")
    assert permanent(403, None) == (MetaPermissionError, f"ctx: HTTP 403: msg {lacks}")
    assert permanent(400, 3018) == (
        MetaApiError,
        "ctx: HTTP 400, code 3018: msg (Meta keeps insights for 37 months; start the range later)",
    )
    for code in (100, 199, 300, None):
        assert permanent(400, code) == (MetaApiError, "ctx: HTTP 400" + (f", code {code}" if code else "") + ": msg")


def test_appsecret_proof_and_epoch_times() -> None:
    import hashlib
    import hmac

    from metaspend_pipeline.meta.parsing import utc_from_epoch as _utc_from_epoch

    assert appsecret_proof("EAAtoken", "s3cret") == hmac.new(b"s3cret", b"EAAtoken", hashlib.sha256).hexdigest()
    assert _utc_from_epoch("1700000000") == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert _utc_from_epoch(1) == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    assert [_utc_from_epoch(v) for v in (0, -5, None, "never", "1.5")] == [None] * 5


def parse(raw: dict[str, object], level: str = "ad") -> InsightRow:
    from metaspend_pipeline.meta.parsing import parse_insight_row

    return parse_insight_row(raw, "act_7", level, dt.date(2026, 10, 1), dt.date(2026, 10, 3))


GOOD_ROW = {
    "date_start": "2026-10-02",
    "date_stop": "2026-10-02",
    "account_id": "7",
    "account_currency": "USD",
    "campaign_id": "1",
    "adset_id": 2,
    "ad_id": "3",
    "spend": "0012.50",
    "impressions": "100",
    "clicks": 0,
}


def test_a_good_row_is_parsed_exactly() -> None:
    row = parse(GOOD_ROW)
    assert (row.ad_account_id, row.level, row.date, row.campaign_id, row.adset_id, row.ad_id) == (
        "act_7", "ad", dt.date(2026, 10, 2), "1", "2", "3",
    )  # fmt: skip
    assert (row.currency, row.spend, row.impressions, row.clicks, row.raw) == (
        "USD",
        Decimal("12.50"),
        100,
        0,
        GOOD_ROW,
    )
    account_row = parse({k: v for k, v in GOOD_ROW.items() if not k.endswith("_id") or k == "account_id"}, "account")
    assert (account_row.campaign_id, account_row.adset_id, account_row.ad_id) == (None, None, None)
    bare = parse(
        {
            "date_start": "2026-10-01",
            "account_currency": "JPY",
            "spend": 5,
            "campaign_id": "1",
            "adset_id": "2",
            "ad_id": "3",
        }
    )
    assert (bare.spend, bare.impressions, bare.clicks, bare.date) == (Decimal(5), None, None, dt.date(2026, 10, 1))
    assert parse({**GOOD_ROW, "date_start": "2026-10-03", "date_stop": None}).date == dt.date(2026, 10, 3)
    big = parse({**GOOD_ROW, "spend": "9999999999999999.99", "clicks": str(2**63 - 1)})
    assert (big.spend, big.clicks) == (Decimal("9999999999999999.99"), 2**63 - 1)
    assert parse({**GOOD_ROW, "account_currency": "BHD", "spend": "1.250"}).spend == Decimal("1.25")


WHERE = "ad account act_7, ad row of 2026-10-02"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"date_start": "2026-9-02"},
            "ad account act_7, ad row of (no date): field date_start '2026-9-02' is not a date",
        ),
        (
            {"date_start": "2026-02-30"},
            "ad account act_7, ad row of 2026-02-30: field date_start '2026-02-30' is not a date",
        ),
        (
            {"date_start": "2026-09-30", "date_stop": None},
            "ad account act_7, ad row of 2026-09-30: date 2026-09-30 is outside the requested range 2026-10-01..2026-10-03",
        ),
        (
            {"date_start": "2026-10-04", "date_stop": None},
            "ad account act_7, ad row of 2026-10-04: date 2026-10-04 is outside the requested range 2026-10-01..2026-10-03",
        ),
        ({"date_stop": "2026-10-03"}, f"{WHERE}: date_stop '2026-10-03' differs from date_start; expected daily rows"),
        ({"account_id": "8"}, f"{WHERE}: field account_id '8' is not act_7"),
        ({"adset_id": True}, f"{WHERE}: field adset_id is missing or not an id (True)"),
        ({"ad_id": "3a"}, f"{WHERE}: field ad_id is missing or not an id ('3a')"),
        ({"campaign_id": "1" * 31}, f"{WHERE}: field campaign_id is missing or not an id ('{'1' * 31}')"),
        ({"account_currency": "usd"}, f"{WHERE}: field account_currency 'usd' is not a currency code (3 letters A-Z)"),
        ({"spend": None}, f"{WHERE}: field spend is missing"),
        ({"spend": 1.5}, f"{WHERE}: field spend 1.5 is not a decimal string"),
        ({"spend": False}, f"{WHERE}: field spend False is not a decimal string"),
        ({"spend": "-1.00"}, f"{WHERE}: field spend '-1.00' is not a non-negative amount in plain digits"),
        ({"spend": "1e3"}, f"{WHERE}: field spend '1e3' is not a non-negative amount in plain digits"),
        (
            {"spend": "\uff11\uff12"},
            f"{WHERE}: field spend '\uff11\uff12' is not a non-negative amount in plain digits",
        ),
        (
            {"spend": "10000000000000000"},
            f"{WHERE}: field spend '10000000000000000' is out of range (at most 16 digits before the decimal point)",
        ),
        ({"spend": "1.255"}, f"{WHERE}: field spend '1.255' has 3 decimals; USD has 2, and amounts are never rounded"),
        (
            {"spend": "1.5", "account_currency": "JPY"},
            f"{WHERE}: field spend '1.5' has 1 decimal; JPY has 0, and amounts are never rounded",
        ),
        (
            {"spend": "1.255", "account_currency": "BHD"},
            f"{WHERE}: field spend '1.255' has 3 decimals; the warehouse stores 2, and amounts are never rounded",
        ),
        ({"clicks": "7.5"}, f"{WHERE}: field clicks '7.5' is not a whole number"),
        ({"clicks": True}, f"{WHERE}: field clicks True is not a whole number"),
        (
            {"purchase_roas": [{"action_type": "omni_purchase", "value": "-2.5"}]},
            f"{WHERE}: field purchase_roas[omni_purchase].value '-2.5' is not a non-negative number",
        ),
        (
            {"purchase_roas": [{"action_type": "omni_purchase", "7d_click": True}]},
            f"{WHERE}: field purchase_roas[omni_purchase].7d_click True is not a non-negative number",
        ),
        ({"impressions": "-1"}, f"{WHERE}: field impressions '-1' is not a whole number"),
        (
            {"impressions": str(2**63)},
            f"{WHERE}: field impressions '{2**63}' is out of range (above 2^63 - 1, the largest BIGINT)",
        ),
        (
            {"impressions": "1" + "0" * 5000},
            f"{WHERE}: field impressions '{'1' + '0' * 5000}' is out of range (above 2^63 - 1, the largest BIGINT)",
        ),
    ],
)
def test_a_bad_row_is_refused_naming_account_day_and_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(MetaDataError) as info:
        parse({**GOOD_ROW, **change})
    assert str(info.value) == message
    assert info.value.ad_account_id == "act_7"


def test_a_row_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(MetaDataError) as info:
        parse(["not", "a", "row"])  # type: ignore[arg-type]
    assert str(info.value) == "ad account act_7, ad insights: a row is not an object"


GOOD_OBJECT = {
    "id": "3",
    "name": "Ad three",
    "status": "ACTIVE",
    "effective_status": "CAMPAIGN_PAUSED",
    "campaign_id": "1",
    "adset_id": "2",
    "created_time": "2026-01-15T10:00:00-0800",
    "updated_time": None,
}


def test_an_object_is_parsed_with_the_parents_of_its_kind() -> None:
    from metaspend_pipeline.meta.models import MetaObject
    from metaspend_pipeline.meta.parsing import parse_object

    assert parse_object(GOOD_OBJECT, "act_7", "ad") == MetaObject(
        "act_7", "ad", "3", "Ad three", "ACTIVE", "CAMPAIGN_PAUSED", None, "1", "2",
        dt.datetime(2026, 1, 15, 18, 0, tzinfo=dt.UTC), None,
    )  # fmt: skip
    adset = parse_object({**GOOD_OBJECT, "objective": "LEADS"}, "act_7", "adset")
    assert (adset.campaign_id, adset.adset_id, adset.objective) == ("1", None, None)
    campaign = parse_object({**GOOD_OBJECT, "objective": "LEADS", "campaign_id": "x"}, "act_7", "campaign")
    assert (campaign.campaign_id, campaign.adset_id, campaign.objective) == (None, None, "LEADS")


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("ad", {"id": "3a"}, "ad account act_7, ad '3a': field id '3a' is missing or not an id"),
        ("ad", {"adset_id": None}, "ad account act_7, ad '3': field adset_id None is missing or not an id"),
        ("adset", {"campaign_id": "²"}, "ad account act_7, adset '3': field campaign_id '²' is missing or not an id"),
        ("ad", {"name": 5}, "ad account act_7, ad '3': field name 5 is missing or not text"),
        ("ad", {"status": "active"}, "ad account act_7, ad '3': field status 'active' is not a status such as ACTIVE"),
        ("ad", {"status": ""}, "ad account act_7, ad '3': field status '' is not a status such as ACTIVE"),
        (
            "ad",
            {"effective_status": "PAUSED1"},
            "ad account act_7, ad '3': field effective_status 'PAUSED1' is not a status such as ACTIVE",
        ),
        ("campaign", {"objective": 1}, "ad account act_7, campaign '3': field objective 1 is not text"),
        (
            "ad",
            {"updated_time": "2026-01-15 10:00"},
            "ad account act_7, ad '3': field updated_time '2026-01-15 10:00' is not a time such as 2026-01-15T10:00:00-0800",
        ),
    ],
)
def test_a_bad_object_is_refused_naming_the_field(kind: str, change: dict[str, object], message: str) -> None:
    from metaspend_pipeline.meta.parsing import parse_object

    with pytest.raises(MetaDataError) as info:
        parse_object({**GOOD_OBJECT, **change}, "act_7", kind)
    assert str(info.value) == message
    with pytest.raises(MetaDataError) as info:
        parse_object("x", "act_7", kind)
    assert str(info.value) == f"ad account act_7, {kind}s: an item is not an object"


class FakeTime:
    """A clock that moves only when the client sleeps: the polls' timing, exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_report_run_that_never_finishes_times_out_twice_then_fails_for_one_day(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    sandbox.configure(async_job_seconds=600.0)  # "Job Not Started" for a minute: far past the timeout
    settings = dataclasses.replace(
        api_settings, async_timeout_seconds=1.75, async_poll_initial=0.25, async_poll_max=0.5
    )
    time = FakeTime()
    client = MetaClient(token_of(sandbox), settings, sleep=time.sleep, clock=time.clock)
    with pytest.raises(MetaReportJobError) as info:
        list(client.insights(ACCOUNT, "ad", SINCE, SINCE, use_async=True))
    assert str(info.value) == (
        f"ad account act_1000000001, ad insights {SINCE}: report run ended with no result within 1.75s "
        "(META_ASYNC_TIMEOUT_SECONDS; last status 'Job Not Started') twice, even for a single day"
    )
    assert client.stats.async_jobs == 2
    # each run: polls 0.25 s apart, then twice as long, at most 0.5 s; after the poll at 1.25 s the
    # next (at 1.75 s) is still within the 1.75 s deadline, the one after is not
    assert time.sleeps == [0.25, 0.5, 0.5, 0.5] * 2
    assert client.stats.response_seconds == 3.5


def test_a_report_split_in_two_halves_covers_every_day_once(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    sandbox.configure(async_fail_above_days=1)
    client = MetaClient(token_of(sandbox), dataclasses.replace(api_settings, async_min_days=1))
    since, until = day(1), day(3)
    rows = list(client.insights(ACCOUNT, "adset", since, until))
    assert as_truth(rows) == truth(sandbox, "adset", since, until)
    ranges = [json.loads(r["params"]["time_range"]) for r in sandbox.requests_log() if r["method"] == "POST"]
    # 3 days fail twice, so they are split: the first half has 3 // 2 = 1 day, the second the other 2,
    # which fail twice too and are split again; single days succeed
    assert [(r["since"], r["until"]) for r in ranges] == [
        (iso(1), iso(3)), (iso(1), iso(3)), (iso(1), iso(1)), (iso(2), iso(3)), (iso(2), iso(3)),
        (iso(2), iso(2)), (iso(3), iso(3)),
    ]  # fmt: skip


def test_insight_requests_ask_daily_rows_of_every_status_and_only_the_levels_ids(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    from metaspend_pipeline.meta.models import EFFECTIVE_STATUSES

    client = MetaClient(token_of(sandbox), api_settings)
    list(client.insights("1000000001", "adset", SINCE, SINCE, use_async=False))  # bare digits: act_ added
    [request] = insight_requests(sandbox)
    assert request["path"].endswith("/act_1000000001/insights")
    params = request["params"]
    assert params["level"] == "adset"
    assert (
        params["fields"]
        == "date_start,date_stop,account_id,account_currency,spend,impressions,clicks,actions,action_values,"
        "purchase_roas,campaign_id,adset_id"
    )
    assert json.loads(params["action_attribution_windows"]) == ["7d_click", "1d_view"]
    assert "use_unified_attribution_setting" not in params  # Meta ignores it since 2025-06-10
    assert json.loads(params["time_range"]) == {"since": SINCE.isoformat(), "until": SINCE.isoformat()}
    assert params["time_increment"] == "1"
    assert json.loads(params["filtering"]) == [
        {"field": "adset.effective_status", "operator": "IN", "value": list(EFFECTIVE_STATUSES)}
    ]
    assert len(EFFECTIVE_STATUSES) == 12 and {"DELETED", "ARCHIVED"} <= set(EFFECTIVE_STATUSES)
    with pytest.raises(ValueError, match="level must be one of account, campaign, adset, ad, got 'ads'"):
        list(client.insights(ACCOUNT, "ads", SINCE, SINCE))
    with pytest.raises(ValueError, match=f"since {SINCE} is after until {day(0)}"):
        list(client.insights(ACCOUNT, "ad", SINCE, day(0)))


def test_async_is_chosen_for_ad_sets_and_ads_from_async_min_days(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    settings = dataclasses.replace(api_settings, async_min_days=3)
    for level, until, posts in (("ad", day(3), 1), ("adset", day(3), 1), ("ad", day(2), 0), ("campaign", day(9), 0)):
        sandbox.reset()
        sandbox.configure(async_job_seconds=0.02)
        list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, level, day(1), until))
        assert len([r for r in sandbox.requests_log() if r["method"] == "POST"]) == posts, (level, until)


def test_the_ad_accounts_of_a_token_in_full(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """Every field of every ad account, against the sandbox's world. The sandbox answers only the
    fields asked for (`id` and `account_id` otherwise), as Meta does: a field left out of the
    request is missing here too."""
    from metaspend_pipeline.meta.models import AdAccount

    accounts = MetaClient(token_of(sandbox, "demo-org-3"), api_settings).ad_accounts()
    truth = [sandbox.world.accounts[a] for a in ("act_3000000001", "act_3000000002")]
    assert accounts == [
        AdAccount(a.id, a.name, a.currency, a.timezone_name, a.timezone_offset_hours_utc, 1) for a in truth
    ]
    assert [(a.currency, a.timezone_offset_hours_utc) for a in accounts] == [("INR", Decimal("5.5")), ("JPY", 9)]
    assert all(isinstance(a.timezone_offset_hours_utc, Decimal) for a in accounts)


def assert_pauses_logged(
    caplog: pytest.LogCaptureFixture, sleeps: Sleeps, settings: MetaApiSettings, reason: str
) -> None:
    """One "pausing" line per sleep, for the campaign insights of SINCE..UNTIL: the fetch, the
    seconds slept, and `reason` (a regex whose group 1 is the usage figure, at least the slowdown)."""
    pauses = [r.getMessage() for r in caplog.records if "pausing" in r.getMessage()]
    assert len(pauses) == len(sleeps.calls) > 0
    context = f"ad account {ACCOUNT}, campaign insights {SINCE}..{UNTIL}"
    for message, seconds in zip(pauses, sleeps.calls, strict=True):
        shown = re.fullmatch(rf"{re.escape(context)}: pausing {seconds:.1f}s \({reason}\)", message)
        assert shown, message
        assert int(shown[1]) >= settings.usage_slowdown_pct


def test_pacing_pauses_are_logged_with_their_reason_and_seconds(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten calls in any half second allowed, 21 pages wanted: every pause the pacer takes is one log
    line that names the fetch, the seconds slept and the figure that made it slow down."""
    sandbox.configure(rate_limit_calls=10, rate_limit_window_seconds=0.5)
    settings = dataclasses.replace(api_settings, page_size=2, retry_max_wait=0.5, usage_window_seconds=0.5)
    sleeps = Sleeps()
    caplog.set_level(logging.INFO, logger="metaspend_pipeline.meta.client")
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    rows = list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL, use_async=False))
    assert as_truth(rows) == truth(sandbox, "campaign")  # 42 rows
    assert client.stats.throttle_events == 0  # so every sleep is a pacing pause
    assert_pauses_logged(caplog, sleeps, settings, r"\S+ at (\d+)%, slowing down before Meta blocks")
    assert client.stats.pacing_wait_seconds == pytest.approx(sum(sleeps.calls))
    assert client.stats.app_pacing_wait_seconds == 0


def test_app_pacing_pauses_are_logged_and_counted_apart(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's limit (ten calls in any half second) is the near one: its pauses are the app's,
    logged with the app figure, and counted as app pacing only."""
    sandbox.configure(app_rate_limit_calls=10, app_rate_limit_window_seconds=0.5)
    settings = dataclasses.replace(api_settings, page_size=2, retry_max_wait=0.5, usage_window_seconds=0.5)
    sleeps = Sleeps()
    caplog.set_level(logging.INFO, logger="metaspend_pipeline.meta.client")
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    rows = list(client.insights(ACCOUNT, "campaign", SINCE, UNTIL, use_async=False))
    assert as_truth(rows) == truth(sandbox, "campaign")  # 42 rows, 21 pages
    assert client.stats.throttle_events == 0
    assert_pauses_logged(
        caplog,
        sleeps,
        settings,
        r"(?:x-app-usage\.\w+|\S+\.app_id_util_pct) at (\d+)%, the app's usage shared by every ad account",
    )
    assert client.stats.app_pacing_wait_seconds == pytest.approx(sum(sleeps.calls))
    assert client.stats.pacing_wait_seconds == 0


def test_a_report_run_meta_finds_too_large_to_start_is_retried_once(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.add_faults([{"kind": "reduce_data", "match": "insights"}])
    client = MetaClient(token_of(sandbox), api_settings)
    rows = list(client.insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=True))
    assert as_truth(rows) == truth(sandbox, "ad")
    assert [r["method"] for r in insight_requests(sandbox)][:2] == ["POST", "POST"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert re.fullmatch(
        rf"ad account {ACCOUNT}, ad insights {SINCE}\.\.{UNTIL}: report run ended with Meta asked for less data "
        r"\(HTTP 500, code 1: Please reduce the amount of data you're asking for, then retry your request "
        r"\(fbtrace_id \w+\)\); retrying it once",
        warning,
    )


def test_meta_asking_for_less_data_even_one_row_at_a_time_is_an_error(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    sandbox.configure(max_page_size=0)  # every page is too large
    settings = dataclasses.replace(api_settings, page_size=2)
    with pytest.raises(MetaApiError) as info:
        list(MetaClient(token_of(sandbox), settings).insights(ACCOUNT, "campaign", SINCE, UNTIL, use_async=False))
    assert re.fullmatch(
        rf"ad account {ACCOUNT}, campaign insights {SINCE}\.\.{UNTIL}: Meta asks for less data even one row at a "
        r"time \(HTTP 500, code 1: Please reduce the amount of data you're asking for, then retry your request "
        r"\(fbtrace_id \w+\)\)",
        str(info.value),
    )
    assert info.value.error is not None and info.value.error.code == 1
    assert [r["params"]["limit"] for r in insight_requests(sandbox)] == ["2", "1"]


def test_report_run_failures_name_the_fetch_and_the_step(sandbox: Sandbox, api_settings: MetaApiSettings) -> None:
    """Starting the run, polling it and reading its pages: an error names the fetch and which of them failed."""
    fetch = re.escape(f"ad account {ACCOUNT}, ad insights {SINCE}..{UNTIL}")
    permission = re.escape("HTTP 400, code 10: (#10) Application does not have permission for this action")
    for fault, step in (
        ({"match": "insights"}, r"starting report run"),
        ({"match": f"/{api_settings.api_version}/1"}, r"report run \d+"),  # a poll: /v26.0/<run id>
        ({"match": "/insights", "skip": 1}, r"report run \d+"),  # the run's first page, after the start
    ):
        sandbox.reset()
        sandbox.add_faults([{"kind": "permission", **fault}])
        with pytest.raises(MetaPermissionError) as info:
            list(MetaClient(token_of(sandbox), api_settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=True))
        assert re.match(rf"{fetch} \({step}\): {permission}", str(info.value)), str(info.value)
    sandbox.reset()
    sandbox.add_faults([{"kind": "corrupt_row", "match": "insights", "field": "report_run_id"}])
    with pytest.raises(MetaApiError) as info:
        list(MetaClient(token_of(sandbox), api_settings).insights(ACCOUNT, "ad", SINCE, UNTIL, use_async=True))
    assert (
        str(info.value)
        == f"ad account {ACCOUNT}, ad insights {SINCE}..{UNTIL}: starting a report run returned no report_run_id"
    )


def test_asking_for_less_data_of_a_single_node_is_one_more_transient_failure(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """Only pages and report runs can be made smaller; one ad account's node is simply asked again."""
    sandbox.add_faults([{"kind": "reduce_data", "match": ACCOUNT}])
    client = MetaClient(token_of(sandbox), api_settings)
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    assert (client.stats.requests, client.stats.retries) == (2, 1)


def test_connection_resets_are_counted_and_timed(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Two connections reset, then an answer: three requests, two retries, and the time spent waiting
    on all three (each at least the sandbox's latency, all within the call's own time)."""
    import time

    sandbox.configure(latency_seconds=0.05)
    sandbox.add_faults([{"kind": "reset", "match": ACCOUNT, "times": 2}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), api_settings, sleep=sleeps)
    started = time.monotonic()
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    elapsed = time.monotonic() - started
    assert (client.stats.requests, client.stats.retries) == (3, 2)
    assert 3 * 0.05 <= client.stats.response_seconds <= elapsed
    # each retry is logged: the call, the attempt, the failure (its kind and what it said), the wait
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == len(sleeps.calls) == 2
    for attempt, (message, seconds) in enumerate(zip(retries, sleeps.calls, strict=True), start=1):
        assert re.fullmatch(
            rf"ad account {ACCOUNT}: attempt {attempt} failed \(ConnectionError: \(.*Connection aborted.*\)\); "
            rf"retrying in {seconds:.1f}s",
            message,
        ), message


def test_a_request_that_cannot_be_sent_fails_at_once_naming_why() -> None:
    """Not a transient failure (nothing reached Meta): no retry, and the error says what was wrong."""
    client = MetaClient("EAAtest0123456789", MetaApiSettings(graph_api_url="http://127.0.0.1:99999"))
    with pytest.raises(MetaApiError) as info:
        client.ad_account(ACCOUNT)
    assert re.fullmatch(
        rf"ad account {ACCOUNT}: the request could not be sent \(InvalidURL: .*127\.0\.0\.1:99999/v26\.0/{ACCOUNT}\)",
        str(info.value),
    )
    assert (client.stats.requests, client.stats.retries) == (0, 0)


def test_an_answer_that_is_not_json_is_retried_and_logged_as_such(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy's HTML page with HTTP 200 instead of Meta's JSON: one more transient failure."""
    sandbox.add_faults([{"kind": "malformed", "match": ACCOUNT}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), api_settings, sleep=sleeps)
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    assert (client.stats.requests, client.stats.retries) == (2, 1)
    (retry,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert retry == (
        f"ad account {ACCOUNT}: attempt 1 failed (HTTP 200 with a body that is not a JSON object); "
        f"retrying in {sleeps.calls[0]:.1f}s"
    )


def test_a_throttle_without_a_wait_hint_backs_off_like_a_transient_failure(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    import random

    sandbox.add_faults([{"kind": "throttle", "match": ACCOUNT, "regain_minutes": 0}])  # no estimate, no reset time
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), api_settings, sleep=sleeps, rng=random.Random(5))
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    # the first back-off: retry_base_delay x 2^0, times a jitter in [0.5, 1)
    assert sleeps.calls == [api_settings.retry_base_delay * random.Random(5).uniform(0.5, 1.0)]
    assert client.stats.throttle_events == 1
    assert client.stats.throttle_wait_seconds == pytest.approx(sleeps.calls[0])


def test_a_wait_that_reaches_the_retry_budget_exactly_is_still_taken(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """Meta says a minute; the wait is capped at 0.05 s, which is the whole budget: within it."""
    settings = dataclasses.replace(api_settings, retry_max_wait=0.05, retry_budget_seconds=0.05)
    sandbox.add_faults([{"kind": "throttle", "match": ACCOUNT, "regain_minutes": 1}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    assert sleeps.calls == [0.05]


def test_a_throttle_at_100_percent_waits_for_the_usage_to_reset(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """No regain estimate, but the ad account at 100% with its usage resetting in 1 s: that is the wait
    (times a jitter in [1, 1.1))."""
    settings = dataclasses.replace(api_settings, retry_max_wait=2.0)
    sandbox.add_faults([{"kind": "throttle", "match": ACCOUNT, "regain_minutes": 0, "reset_seconds": 1}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    assert len(sleeps.calls) == 1 and 1.0 <= sleeps.calls[0] < 1.1


def test_a_throttle_waits_for_the_regain_estimate_when_it_is_the_longer_hint(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """Meta estimates a minute, the usage resets in 1 s: the minute wins, capped at META_RETRY_MAX_WAIT (2 s)."""
    settings = dataclasses.replace(api_settings, retry_max_wait=2.0)
    sandbox.add_faults([{"kind": "throttle", "match": ACCOUNT, "regain_minutes": 1, "reset_seconds": 1}])
    sleeps = Sleeps()
    client = MetaClient(token_of(sandbox), settings, sleep=sleeps)
    assert client.ad_account(ACCOUNT).currency == sandbox.world.accounts[ACCOUNT].currency
    assert sleeps.calls == [2.0]
