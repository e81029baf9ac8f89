"""Meta's API versions: the table of expiry dates and how a version stands on a day, the client against
a sandbox that treats versions as Meta does (auto-upgrade with a warning header, #2635 below the
oldest), and how far back insights reach."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest
import requests

from metaspend_pipeline.meta import lookback, versions
from metaspend_pipeline.meta.client import VERSION_WARNING_HEADER, ClientStats, MetaClient
from metaspend_pipeline.meta.errors import MetaApiVersionError
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings, SettingsError
from metaspend_pipeline_tests.dates import day
from metaspend_pipeline_tests.meta.test_client import ACCOUNT, as_truth, token_of, truth

D = dt.date

# --- the table ---------------------------------------------------------------------------------------


def test_the_table_holds_meta_s_published_dates_and_the_default_is_current() -> None:
    assert {v.name: v.expires for v in versions.VERSIONS if v.expires} == {
        "v22.0": D(2026, 2, 19),
        "v23.0": D(2026, 6, 9),
        "v24.0": D(2026, 11, 10),
        "v25.0": D(2027, 2, 23),
    }
    assert [versions.version_key(v.name) for v in versions.VERSIONS] == sorted(
        versions.version_key(v.name) for v in versions.VERSIONS
    )
    assert MetaApiSettings().api_version == MetaApiSettings.from_env({}).api_version == versions.DEFAULT_VERSION
    assert versions.version_key(versions.DEFAULT_VERSION) >= (25, 0)
    assert versions.version_status(versions.DEFAULT_VERSION, versions.CHECKED_ON).level == "ok"


@pytest.mark.parametrize(
    ("version", "today", "level", "reason"),
    [
        ("v24.0", D(2026, 12, 6), "error", "v24.0 expired on 2026-11-10 (Meta's published date)"),
        ("v24.0", D(2026, 11, 10), "error", "v24.0 expired on 2026-11-10 (Meta's published date)"),
        ("v24.0", D(2026, 11, 9), "warn", "v24.0 expires on 2026-11-10 (Meta's published date), in 1 day(s)"),
        ("v25.0", D(2026, 12, 25), "warn", "v25.0 expires on 2027-02-23 (Meta's published date), in 60 day(s)"),
        ("v25.0", D(2026, 12, 24), "ok", "v25.0 expires on 2027-02-23 (Meta's published date), in 61 day(s)"),
        ("v21.0", D(2026, 12, 6), "error", "v21.0 is older than v22.0, which expired on 2026-02-19"),
    ],
)
def test_a_version_warns_within_60_days_of_its_expiry_and_errs_past_it(
    version: str, today: dt.date, level: str, reason: str
) -> None:
    status = versions.version_status(version, today)
    assert (status.level, status.reason) == (level, reason)


def test_a_version_without_a_published_date_warns_on_its_estimated_expiry() -> None:
    """v26.0 (released 2026-07-29): Meta's date is not in the table; a year after release is the estimate."""
    ok = versions.version_status("v26.0", D(2026, 12, 6))
    assert (ok.level, ok.expires, ok.estimated) == ("ok", D(2027, 7, 29), True)
    assert "estimated" in ok.reason and "2027-07-29" in ok.reason
    assert versions.version_status("v26.0", D(2027, 5, 30)).level == "warn"
    late = versions.version_status("v26.0", D(2027, 8, 1))
    assert late.level == "warn" and "probably expired" in late.reason  # never an error on a guess
    newer = versions.version_status("v30.0", D(2026, 12, 6))
    assert newer.level == "ok" and "newer than every version in the table" in newer.reason


def test_meta_api_version_is_checked_when_read() -> None:
    assert MetaApiSettings.from_env({"META_API_VERSION": "25.0"}).api_version == "v25.0"
    with pytest.raises(SettingsError, match=f"META_API_VERSION must look like {versions.DEFAULT_VERSION}"):
        MetaApiSettings.from_env({"META_API_VERSION": "latest"})


def test_the_sandbox_of_the_demo_treats_versions_as_meta_does_on_the_day() -> None:
    assert versions.as_meta_serves_them(D(2026, 12, 6)) == (["v22.0", "v23.0", "v24.0"], "v22.0", "v27.0")
    assert versions.as_meta_serves_them(D(2026, 11, 9)).expired == ["v22.0", "v23.0"]


# --- the client against the sandbox's versions ---------------------------------------------------------


def test_an_expired_version_is_answered_with_meta_s_warning_kept_once_and_logged(
    sandbox: Sandbox, api_settings: MetaApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.configure(expired_versions=["v23.0", "v24.0"], oldest_version="v22.0")
    client = MetaClient(token_of(sandbox), dataclasses.replace(api_settings, api_version="v24.0"))
    with caplog.at_level(logging.DEBUG, logger="metaspend_pipeline"):
        client.ad_account(ACCOUNT)
        rows = list(client.insights(ACCOUNT, "campaign", day(1), day(3)))
    assert as_truth(rows) == truth(sandbox, "campaign", day(1), day(3))  # answered all the same
    meta_words = (
        "Marketing API v24.0 has been deprecated. This call was automatically upgraded to v25.0; calls that "
        "cannot be upgraded will fail. Please update your app to v25.0 or later."
    )
    assert client.stats.requests >= 2
    assert client.stats.version_warnings == [meta_words]  # once, for the caller to report
    run = ClientStats()
    for _ in range(2):  # a run adds up its clients: each of Meta's warnings once
        run.add(client.stats)
    assert (run.version_warnings, run.requests) == ([meta_words], 2 * client.stats.requests)
    seen = [r.getMessage() for r in caplog.records if "Meta warns" in r.getMessage()]
    assert seen == [f"ad account {ACCOUNT}: Meta warns about Marketing API v24.0 (META_API_VERSION): {meta_words}"]
    # the control: a version Meta still serves draws no warning
    current = MetaClient(token_of(sandbox), api_settings)
    current.ad_account(ACCOUNT)
    assert current.stats.version_warnings == []


def test_a_version_below_the_oldest_meta_answers_fails_naming_it_and_quoting_meta(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    sandbox.configure(expired_versions=["v23.0", "v24.0"], oldest_version="v22.0", latest_version="v27.0")
    client = MetaClient(token_of(sandbox), dataclasses.replace(api_settings, api_version="v21.0"))
    with pytest.raises(MetaApiVersionError) as info:
        client.ad_account(ACCOUNT)
    assert str(info.value).startswith(
        f"ad account {ACCOUNT}: Meta no longer serves Marketing API v21.0 (META_API_VERSION) and answers: "
        "HTTP 400, code 2635: (#2635) You are calling a deprecated version of the Ads API. Please update to the "
        "latest version: v27.0. (fbtrace_id "
    )
    assert (client.stats.requests, client.stats.retries) == (1, 0)  # never retried
    assert token_of(sandbox) not in str(info.value)


def test_the_sandbox_s_versions_are_set_when_it_starts_and_changed_while_it_runs(sandbox: Sandbox) -> None:
    server = SandboxServer(Sandbox(0, dataclasses.replace(sandbox.config, expired_versions=["v24.0"]))).start()
    try:
        token = server.sandbox.world.organizations[0].token
        headers = {"Authorization": f"Bearer {token}"}
        answer = requests.get(f"{server.url}/v24.0/{ACCOUNT}", headers=headers, timeout=5)
        assert answer.status_code == 200 and "upgraded to v25.0" in answer.headers[VERSION_WARNING_HEADER]
        assert (
            VERSION_WARNING_HEADER
            not in requests.get(f"{server.url}/v25.0/{ACCOUNT}", headers=headers, timeout=5).headers
        )
        requests.post(f"{server.url}/__sandbox/config", json={"oldest_version": "v25.0"}, timeout=5).raise_for_status()
        refused = requests.get(f"{server.url}/v24.0/{ACCOUNT}", headers=headers, timeout=5)
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, 2635)
        requests.delete(f"{server.url}/__sandbox/faults", timeout=5).raise_for_status()  # back to the startup config
        assert requests.get(f"{server.url}/v24.0/{ACCOUNT}", headers=headers, timeout=5).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the command's output, not its SQL
def test_accounts_connect_says_what_meta_warns(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from metaspend_pipeline.cli import cli

    sandbox.configure(expired_versions=["v24.0"])
    monkeypatch.setenv("META_API_VERSION", "v24.0")
    token = token_of(sandbox, "demo-org-2")
    result = CliRunner().invoke(cli, ["accounts", "connect", "--org", "org-br"], input=token, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "metaspend: warning: Meta warns about Marketing API v24.0: Marketing API v24.0 has been deprecated. This "
        "call was automatically upgraded to v25.0; calls that cannot be upgraded will fail. Please update your app "
        "to v25.0 or later.\n"
    )


# --- how far back ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "months", "first"),
    [
        (D(2026, 12, 6), 37, D(2023, 11, 6)),
        (D(2026, 12, 31), 37, D(2023, 11, 30)),  # no 31 November: its last day
        (D(2028, 3, 31), 13, D(2027, 2, 28)),
        (D(2027, 3, 29), 37, D(2024, 2, 29)),  # a leap day exists that year
    ],
)
def test_the_first_day_meta_serves(today: dt.date, months: int, first: dt.date) -> None:
    assert lookback.months_before(today, months) == first


def test_a_range_before_the_first_day_is_refused_naming_the_limit_and_the_day() -> None:
    today = D(2026, 12, 6)
    lookback.refuse_too_old(D(2023, 11, 6), D(2023, 11, 30), today)  # the first day itself is served
    with pytest.raises(lookback.RangeTooOldError) as info:
        lookback.refuse_too_old(D(2023, 11, 5), D(2023, 11, 30), today)
    assert str(info.value) == (
        "the range 2023-11-05..2023-11-30 starts before 2023-11-06: Meta's insights reach back 37 months, so the "
        "first day Meta serves today (2026-12-06) is 2023-11-06; start the range on or after 2023-11-06"
    )
    with pytest.raises(lookback.RangeTooOldError, match=r"reach back 13 months.* is 2025-11-06;"):
        lookback.refuse_too_old(D(2025, 11, 5), D(2025, 11, 5), today, lookback.UNIQUE_COUNTS_AND_HOURLY)


def test_the_client_never_asks_for_a_day_the_limit_lets_through_and_meta_refuses(
    sandbox: Sandbox, api_settings: MetaApiSettings
) -> None:
    """The sandbox refuses with #3018 what Meta refuses; the first allowed day is never among it."""
    first = lookback.first_allowed_day(sandbox.today())
    client = MetaClient(token_of(sandbox), api_settings)
    assert as_truth(list(client.insights(ACCOUNT, "account", first, first))) == truth(sandbox, "account", first, first)
    with pytest.raises(Exception, match="code 3018"):
        list(client.insights(ACCOUNT, "account", lookback.months_before(sandbox.today(), 38), first))
