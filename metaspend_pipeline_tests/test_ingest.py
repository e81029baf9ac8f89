"""`ingest.py` without Dagster: windows, a fetch across window boundaries against the sandbox's
truth, and what the report and the fetch log say of each organization and ad account."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline import ingest
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.errors import NoValidTokenError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import raw as raw_store
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
