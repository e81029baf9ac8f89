"""`ingest.py` without Dagster: windows, a fetch across window boundaries against the sandbox's
truth, and what the report and the fetch log say of each organization and ad account.

Below, what the fetch log says of Meta's limits, the fetch's threads, a row Meta sends twice, what
is stored of an ad account, and the names refresh after a fetch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline import ingest
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.errors import NoValidTokenError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import OBJECT_TABLES, meta_ad_account
from metaspend_pipeline_tests.dates import day
from metaspend_pipeline_tests.test_fetch_concurrency import raw_as_truth, raw_rows

D = dt.date


def test_windows_cut_a_range_into_consecutive_windows_of_at_most_n_days() -> None:
    first = D(2026, 1, 30)

    def cut(last_day: int, days: int) -> list[tuple[int, int]]:
        until = first + dt.timedelta(days=last_day)
        return [((s - first).days, (e - first).days) for s, e in ingest.windows(first, until, days)]

    assert cut(9, 3) == [(0, 2), (3, 5), (6, 8), (9, 9)]
    assert cut(8, 3) == [(0, 2), (3, 5), (6, 8)]
    assert cut(2, 1) == [(0, 0), (1, 1), (2, 2)]
    assert cut(0, 92) == [(0, 0)]
    assert cut(4, 92) == [(0, 4)]
    assert list(ingest.windows(first, first - dt.timedelta(days=1), 3)) == []


def _accounts(sandbox: Sandbox, settings: MetaApiSettings, organizations: list[str]) -> dict[str, list[MetaAdAccount]]:
    return {
        org.organization_id: [
            MetaAdAccount(
                org.organization_id, account, org.provider, f"ca-{org.organization_id}", MetaClient(org.token, settings)
            )
            for account in org.ad_accounts
        ]
        for org in sandbox.world.organizations
        if org.organization_id in organizations
    }


def _truth(sandbox: Sandbox, organizations: list[str], since: D, until: D) -> list[tuple]:
    out = []
    for org in sandbox.world.organizations:
        if org.organization_id not in organizations:
            continue
        for account in org.ad_accounts:
            for level in ingest.LEVELS:
                for r in sandbox.world.truth(account, level, since, until):
                    ids = (r["campaign_id"], r["adset_id"], r["ad_id"])
                    key = (org.organization_id, account, level.upper(), D.fromisoformat(r["date"]), *ids)
                    out.append((*key, r["spend"], str(r["impressions"]), str(r["clicks"])))
    return sorted(out, key=str)


def test_a_range_across_window_boundaries_equals_the_truth_and_is_reported_exactly(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """Seven days in windows of three (3 + 3 + 1): every boundary day is fetched once."""
    since, until = day(1), day(7)
    orgs = ["demo-org-1", "demo-org-3"]
    accounts = _accounts(sandbox, api_settings, orgs)
    done: list[str] = []
    report = ingest.fetch_organizations(
        engine,
        orgs,
        accounts.__getitem__,
        lambda _: pytest.fail("no token was rejected"),
        since,
        until,
        run_id="windows",
        window_days=3,
        on_account_done=lambda a: done.append(a.ad_account_id),
    )
    truth = _truth(sandbox, orgs, since, until)
    assert raw_as_truth(raw_rows(engine)) == truth
    assert {r[3] for r in truth} == {since + dt.timedelta(days=n) for n in range(7)}

    rows_per_account = Counter((r[0], r[1]) for r in truth)
    assert [
        (o.organization_id, o.ad_account_id, o.since, o.until, o.status, o.error, o.rows) for o in report.outcomes
    ] == [
        (org, account, since, until, "OK", None, rows_per_account[(org, account)])
        for org, account in sorted(rows_per_account)
    ]
    assert all(o.requests > 0 for o in report.outcomes)
    assert sorted(done) == sorted(a for org in orgs for a in (x.ad_account_id for x in accounts[org]))
    assert dict(report.rows_by_day_level) == dict(Counter((r[3], r[2]) for r in truth))
    spend: dict[tuple[D, str], Decimal] = defaultdict(Decimal)
    for org in orgs:
        for account in (a.ad_account_id for a in accounts[org]):
            for r in sandbox.world.truth(account, "account", since, until):
                spend[(D.fromisoformat(r["date"]), r["currency"])] += Decimal(r["spend"])
    assert dict(report.spend_by_day_currency) == dict(spend)
    assert report.stats.requests == sum(a.client.stats.requests for org in orgs for a in accounts[org])
    assert report.stats.rows == len(truth)
    assert (report.failures, report.failed_organizations, report.accounts_fetched) == ([], [], 4)
    assert report.concurrency == 1
    assert report.fetch_wall_seconds > 0
    assert 0 <= report.meta_wait_share <= 1
    with engine.connect() as conn:
        assert raw_store.fetches_of_run(conn, "windows") == sorted(report.outcomes, key=lambda o: o.ad_account_id or "")
        info = raw_store.ad_account_info(conn)
    assert set(info) == {a.ad_account_id for org in orgs for a in accounts[org]}


def test_each_failure_is_recorded_and_named_and_the_others_go_on(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    since = until = day(2)
    org1 = next(o for o in sandbox.world.organizations if o.organization_id == "demo-org-1")
    sandbox.add_token(org1.token, "demo-org-1", revoked=True)
    accounts = _accounts(sandbox, api_settings, ["demo-org-1", "demo-org-2", "demo-org-3"])

    def accounts_of(org: str) -> list[MetaAdAccount]:
        if org == "expired-org":
            raise NoValidTokenError("No valid access token found for organization expired-org", ("ca-x", "ca-y"))
        if org == "broken-org":
            raise RuntimeError("the lookup broke")
        return accounts[org]

    reauth: list[str | None] = []
    caplog.set_level(logging.ERROR, logger="metaspend_pipeline.ingest")
    report = ingest.fetch_organizations(
        engine,
        ["broken-org", "demo-org-1", "demo-org-3", "expired-org"],
        accounts_of,
        reauth.append,
        since,
        until,
        run_id="failures",
        window_days=1,
        only_ad_accounts=["act_1000000001", "act_1000000002", "act_3000000002"],
    )
    assert reauth == ["ca-x", "ca-y", "ca-demo-org-1"]  # the rejected token's account once, not per ad account
    outcomes = {(o.organization_id, o.ad_account_id): o for o in report.outcomes}
    assert list(outcomes) == [
        ("broken-org", None),
        ("demo-org-1", "act_1000000001"),
        ("demo-org-1", "act_1000000002"),
        ("demo-org-3", "act_3000000002"),  # act_3000000001 is not among the ad accounts asked for
        ("expired-org", None),
    ]
    reconnect = "; its connected account is now NEEDS_REAUTH (reconnect it with `metaspend accounts connect`)"
    assert outcomes[("broken-org", None)].error == "organization broken-org: RuntimeError: the lookup broke"
    assert outcomes[("expired-org", None)].error == (
        "organization expired-org: No valid access token found for organization expired-org" + reconnect
    )
    first, second = outcomes[("demo-org-1", "act_1000000001")], outcomes[("demo-org-1", "act_1000000002")]
    assert first.error is not None and second.error is not None
    assert first.error.startswith("organization demo-org-1, ad account act_1000000001: ad account act_1000000001")
    assert "Meta rejected the access token" in first.error and first.error.endswith(reconnect)
    assert second.error.startswith("organization demo-org-1, ad account act_1000000002: ad account act_1000000001")
    assert (first.requests, second.requests) == (1, 0)  # the second ad account never tried the rejected token
    assert org1.token not in first.error
    ok = outcomes[("demo-org-3", "act_3000000002")]
    truth_rows = sum(len(sandbox.world.truth("act_3000000002", level, since, until)) for level in ingest.LEVELS)
    assert (ok.status, ok.error, ok.rows) == ("OK", None, truth_rows)
    assert [o.status for o in report.failures] == ["FAILED"] * 4
    assert report.failed_organizations == ["broken-org", "demo-org-1", "expired-org"]
    assert report.accounts_fetched == 1
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "metaspend_pipeline.ingest"]
    assert sorted(logged) == sorted((logging.ERROR, o.error) for o in report.failures)
    with engine.connect() as conn:
        logged = raw_store.fetches_of_run(conn, "failures")
    assert sorted(logged, key=lambda o: (o.organization_id, o.ad_account_id or "")) == report.outcomes


# --- the fetch log and Meta's limits, threads, a row sent twice, ad accounts, names --------------


def _organization(sandbox: Sandbox, organization_id: str):  # type: ignore[no-untyped-def]
    return next(o for o in sandbox.world.organizations if o.organization_id == organization_id)


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def test_the_fetch_log_counts_every_pause_for_metas_limits_and_the_requests_meta_saw(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """One ad account, throttled once by the app's limit (code 4: the app at 100%), then paced for the
    app's usage and for its own (each call 10% of its limit, slowing down from 50%). The fetch log's
    `throttle_wait_seconds` is every pause the client took for these limits (its sleeps, recorded
    instead of slept), and `requests` every call the sandbox saw with the token."""
    org = _organization(sandbox, "demo-org-2")
    sandbox.configure(rate_limit_calls=10, rate_limit_window_seconds=300.0)
    sandbox.add_faults([{"kind": "throttle", "code": 4, "match": "/insights"}])
    slept: list[float] = []
    settings = dataclasses.replace(api_settings, usage_slowdown_pct=50.0)
    client = MetaClient(org.token, settings, sleep=slept.append)
    account = MetaAdAccount(org.organization_id, org.ad_accounts[0], org.provider, "ca-2", client)
    report = ingest.fetch_organizations(
        engine, [org.organization_id], lambda _: [account], pytest.fail, day(2), day(2), run_id="waits", window_days=1
    )
    stats = client.stats
    # each kind of pause happened, so that the sum below is a sum of three
    assert stats.throttle_wait_seconds > 0 and stats.app_pacing_wait_seconds > 0 and stats.pacing_wait_seconds > 0
    assert stats.retries == stats.throttle_events == 1  # no other failure: every sleep was for a limit
    [outcome] = report.outcomes
    assert outcome.status == "OK"
    assert outcome.throttle_wait_seconds == pytest.approx(sum(slept))
    seen = [r for r in sandbox.requests_log() if r["token_fingerprint"] == _fingerprint(org.token)]
    assert outcome.requests == len(seen) > 0
    with engine.connect() as conn:
        assert raw_store.fetches_of_run(conn, "waits") == [outcome]


def test_ad_accounts_are_fetched_concurrency_at_a_time_and_reported_in_order(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """Five ad accounts, two at a time: on at most two threads of the fetch's own (named `meta-fetch`),
    the rows equal the truth, the outcomes come sorted by organization and ad account whatever order
    the accounts were listed and finished in, and the wall time is the fetch's. One at a time, every
    ad account is fetched in the caller's thread."""
    sandbox.configure(latency_seconds=0.02)  # no thread finishes before the last ad account is queued
    orgs = ["demo-org-1", "demo-org-2", "demo-org-3"]
    accounts = _accounts(sandbox, api_settings, orgs)
    threads: dict[str, str] = {}

    def fetch(concurrency: int, run_id: str) -> ingest.IngestReport:
        threads.clear()
        return ingest.fetch_organizations(
            engine,
            list(reversed(orgs)),
            lambda org: list(reversed(accounts[org])),
            pytest.fail,
            day(2),
            day(2),
            run_id=run_id,
            window_days=1,
            concurrency=concurrency,
            on_account_done=lambda a: threads.__setitem__(a.ad_account_id, threading.current_thread().name),
        )

    started = time.monotonic()
    report = fetch(2, "two")
    elapsed = time.monotonic() - started
    every = sorted((org, a.ad_account_id) for org in orgs for a in accounts[org])
    assert [(o.organization_id, o.ad_account_id) for o in report.outcomes] == every
    assert {o.status for o in report.outcomes} == {"OK"}
    assert report.concurrency == 2
    assert sorted(threads) == sorted(a for _, a in every)
    assert all(name.startswith("meta-fetch") for name in threads.values()), threads
    assert 1 <= len(set(threads.values())) <= 2, threads
    assert 0 < report.fetch_wall_seconds <= elapsed
    assert raw_as_truth(raw_rows(engine)) == _truth(sandbox, orgs, day(2), day(2))

    report = fetch(1, "one")
    assert report.concurrency == 1
    assert set(threads.values()) == {threading.current_thread().name}
    assert [(o.organization_id, o.ad_account_id) for o in report.outcomes] == every


def test_a_row_meta_sends_twice_fails_the_ad_account_and_names_the_row(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """The campaign page of one day lists its first campaign under the second one's id: the ad account
    fails naming the day, the level and the ids, the level's stored rows are not replaced, and the
    other organization goes on."""
    org = _organization(sandbox, "demo-org-2")
    account_id = org.ad_accounts[0]
    since = until = day(2)
    campaigns = [r["campaign_id"] for r in sandbox.world.truth(account_id, "campaign", since, until)]
    assert len(campaigns) >= 2
    twice = {
        "kind": "corrupt_row",
        "match": f"{account_id}/insights",
        "skip": 1,  # the account level is fetched first, then the campaign level
        "field": "campaign_id",
        "value": campaigns[1],
    }
    sandbox.add_faults([twice])
    accounts = _accounts(sandbox, api_settings, ["demo-org-2", "demo-org-3"])
    report = ingest.fetch_organizations(
        engine,
        ["demo-org-2", "demo-org-3"],
        accounts.__getitem__,
        pytest.fail,
        since,
        until,
        run_id="twice",
        window_days=1,
    )
    why = (
        f"ad account {account_id}, campaign row of {since}: Meta returned campaign {campaigns[1]}, "
        "ad set None, ad None twice"
    )
    failed = report.outcomes[0]
    assert (failed.organization_id, failed.ad_account_id, failed.status, failed.rows) == (
        "demo-org-2",
        account_id,
        "FAILED",
        0,
    )
    assert failed.error == f"organization demo-org-2, ad account {account_id}: {why}"
    assert [o.status for o in report.outcomes[1:]] == ["OK", "OK"]
    # the account level, fetched before, is stored; nothing of the campaign level or below
    stored = [r for r in raw_as_truth(raw_rows(engine)) if r[0] == "demo-org-2"]
    assert stored == [r for r in _truth(sandbox, ["demo-org-2"], since, until) if r[2] == "ACCOUNT"]

    sandbox.add_faults([twice])
    with pytest.raises(MetaDataError) as info:
        ingest.fetch_account(engine, accounts["demo-org-2"][0], since, until, 1, ingest.IngestReport())
    assert (str(info.value), info.value.ad_account_id) == (why, account_id)


def test_fetch_account_stores_the_ad_account_as_meta_describes_it_and_adds_to_the_report(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """Two ad accounts fetched into one report: its counts are both accounts' together, and
    `meta_ad_account` holds each one's name, currency and time zone as the world has them."""
    accounts = _accounts(sandbox, api_settings, ["demo-org-1"])["demo-org-1"]
    since, until = day(2), day(3)
    report = ingest.IngestReport()
    for account in accounts:
        ingest.fetch_account(engine, account, since, until, 1, report)
    truth = _truth(sandbox, ["demo-org-1"], since, until)
    assert dict(report.rows_by_day_level) == dict(Counter((r[3], r[2]) for r in truth))
    spend: dict[tuple[dt.date, str], Decimal] = {}
    for account in accounts:
        for r in sandbox.world.truth(account.ad_account_id, "account", since, until):
            key = (dt.date.fromisoformat(r["date"]), r["currency"])
            spend[key] = spend.get(key, Decimal(0)) + Decimal(r["spend"])
    assert dict(report.spend_by_day_currency) == spend
    t = meta_ad_account
    with engine.connect() as conn:
        stored = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                sa.select(t.c.ad_account_id, t.c.name, t.c.currency, t.c.timezone_name, t.c.timezone_offset_hours_utc)
            )
        }
    world = sandbox.world.accounts
    assert stored == {
        a.ad_account_id: (
            world[a.ad_account_id].name,
            world[a.ad_account_id].currency,
            world[a.ad_account_id].timezone_name,
            Decimal(world[a.ad_account_id].timezone_offset_hours_utc),
        )
        for a in accounts
    }


def test_an_ad_the_names_do_not_know_is_fetched_again_with_the_spend(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """The names were fetched an instant ago, but one ad with spend in the range is missing from
    `meta_ad` (created since): the next spend fetch of that range fetches the names again, and
    replaces the range's raw rows."""
    [account] = [a for a in _accounts(sandbox, api_settings, ["demo-org-2"])["demo-org-2"]]
    since = until = day(2)

    def fetch(run_id: str) -> None:
        report = ingest.fetch_organizations(
            engine, ["demo-org-2"], lambda _: [account], pytest.fail, since, until, run_id=run_id, window_days=1
        )
        assert [o.status for o in report.outcomes] == ["OK"]

    ad = OBJECT_TABLES["ad"]
    fetch("first")
    new_ad = sandbox.world.truth(account.ad_account_id, "ad", since, until)[0]["ad_id"]
    with engine.begin() as conn:
        assert conn.execute(sa.delete(ad).where(ad.c.id == new_ad)).rowcount == 1
    fetch("again")
    with engine.connect() as conn:
        assert conn.execute(sa.select(ad.c.name).where(ad.c.id == new_ad)).scalar_one_or_none() is not None
    assert raw_as_truth(raw_rows(engine)) == _truth(sandbox, ["demo-org-2"], since, until)  # replaced, not doubled


def test_an_ad_account_two_organizations_share_is_counted_for_each(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """An agency's organization lists its client's ad account too: the fetch stores it for both, and
    the run's counts and spend are the two fetches' together (twice the ad account's own)."""
    org = _organization(sandbox, "demo-org-2")
    since, until = day(2), day(3)

    def account(organization_id: str) -> list[MetaAdAccount]:
        client = MetaClient(org.token, api_settings)
        return [MetaAdAccount(organization_id, org.ad_accounts[0], org.provider, f"ca-{organization_id}", client)]

    report = ingest.fetch_organizations(
        engine, ["agency", "demo-org-2"], account, pytest.fail, since, until, run_id="shared", window_days=2
    )
    assert [(o.organization_id, o.status) for o in report.outcomes] == [("agency", "OK"), ("demo-org-2", "OK")]
    truth = _truth(sandbox, ["demo-org-2"], since, until)
    assert dict(report.rows_by_day_level) == {k: 2 * n for k, n in Counter((r[3], r[2]) for r in truth).items()}
    spend: dict[tuple[dt.date, str], Decimal] = {}
    for r in sandbox.world.truth(org.ad_accounts[0], "account", since, until):
        key = (dt.date.fromisoformat(r["date"]), r["currency"])
        spend[key] = spend.get(key, Decimal(0)) + 2 * Decimal(r["spend"])
    assert dict(report.spend_by_day_currency) == spend
    stored = raw_as_truth(raw_rows(engine))
    assert [r[1:] for r in stored if r[0] == "agency"] == [r[1:] for r in stored if r[0] == "demo-org-2"]
    assert [r for r in stored if r[0] == "demo-org-2"] == truth


def test_rows_spooled_to_disk_are_stored_as_they_came(
    sandbox: Sandbox, api_settings: MetaApiSettings, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool keeps SPOOL_MEMORY_BYTES in memory, then moves to a temporary file: with 1 KiB, every
    level of a week spills to disk, and the rows stored are the truth."""
    monkeypatch.setattr(ingest, "SPOOL_MEMORY_BYTES", 1024)
    since, until = day(1), day(7)
    accounts = _accounts(sandbox, api_settings, ["demo-org-3"])
    report = ingest.fetch_organizations(
        engine, ["demo-org-3"], accounts.__getitem__, pytest.fail, since, until, run_id="disk", window_days=7
    )
    assert {o.status for o in report.outcomes} == {"OK"}
    assert raw_as_truth(raw_rows(engine)) == _truth(sandbox, ["demo-org-3"], since, until)
