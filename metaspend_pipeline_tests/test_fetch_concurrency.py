"""Ad accounts fetched in parallel (META_FETCH_CONCURRENCY) through Dagster, against the sandbox."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from metaspend_pipeline import ingest
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.throttle import AppPacer
from metaspend_pipeline.sandbox.server import Sandbox, SandboxServer
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage.schema import connected_account, meta_fetch_log, meta_raw_insights
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.defs.test_assets import END, START, failure_text, sort_rows, spend_rows, truth_rows

ALL_ACCOUNTS = {
    ("demo-org-1", "act_1000000001"),
    ("demo-org-1", "act_1000000002"),
    ("demo-org-2", "act_2000000001"),
    ("demo-org-3", "act_3000000001"),
    ("demo-org-3", "act_3000000002"),
}


def raw_rows(engine: sa.Engine) -> list[tuple]:
    """The raw table's content (not its ids or fetch times): organization, account, level, day, payload."""
    t = meta_raw_insights
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.organization_id, t.c.ad_account_id, t.c.level, t.c.date, t.c.row))
        return sorted((*r[:4], json.dumps(r[4], sort_keys=True)) for r in rows)


def raw_truth(sandbox: Sandbox) -> list[tuple]:
    """(organization, ad account, level, day, spend, impressions, clicks) a correct fetch stores."""
    since, until = dt.date.fromisoformat(START), dt.date.fromisoformat(END)
    out = []
    for org in sandbox.world.organizations:
        for account in org.ad_accounts:
            for level in ("account", "campaign", "adset", "ad"):
                for r in sandbox.world.truth(account, level, since, until):
                    ids = (r["campaign_id"], r["adset_id"], r["ad_id"])
                    key = (org.organization_id, account, level.upper(), dt.date.fromisoformat(r["date"]), *ids)
                    out.append((*key, r["spend"], str(r["impressions"]), str(r["clicks"])))
    return sorted(out, key=str)


def raw_as_truth(rows: list[tuple]) -> list[tuple]:
    out = []
    for org, account, level, day, payload in rows:
        p = json.loads(payload)
        ids = (p.get("campaign_id"), p.get("adset_id"), p.get("ad_id"))
        out.append((org, account, level, day, *ids, p["spend"], p["impressions"], p["clicks"]))
    return sorted(out, key=str)


def fetch_log(engine: sa.Engine, run_id: str) -> list[tuple]:
    t = meta_fetch_log
    query = sa.select(t.c.organization_id, t.c.ad_account_id, t.c.status, t.c.requests, t.c.throttle_wait_seconds)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query.where(t.c.run_id == run_id))]


def raw_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, object]:
    """The run-level numbers of the fetch: on its one observation without a partition."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION):
        observation = record.asset_observation
        if observation.asset_key == dg.AssetKey("meta_raw_insights") and observation.partition is None:
            return {k: v.value for k, v in observation.metadata.items()}
    raise AssertionError("meta_raw_insights recorded no run-level observation")


@pytest.mark.both_backends
def test_four_at_a_time_equals_the_truth_and_one_at_a_time(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five ad accounts four at a time: the same rows as the sandbox's truth and as one at a time,
    with the writers of SQLite (one at a time) and PostgreSQL overlapping."""
    pipeline.sandbox.configure(latency_seconds=0.2, async_job_seconds=0.02)
    monkeypatch.setenv("META_FETCH_CONCURRENCY", "4")
    with dg.instance_for_test() as instance:
        result = pipeline.run(START, END, instance=instance)
        assert result.success, failure_text(result)
        metadata = raw_metadata(instance, result.run_id)
    parallel = raw_rows(pipeline.engine)
    assert raw_as_truth(parallel) == raw_truth(pipeline.sandbox)
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline)
    log = fetch_log(pipeline.engine, result.run_id)
    assert {(o, a) for o, a, *_ in log} == ALL_ACCOUNTS and len(log) == 5  # one row per ad account
    assert all(status == "OK" and requests > 0 for _, _, status, requests, _ in log)
    assert metadata["fetch_concurrency"] == 4
    assert metadata["meta_requests"] == sum(r[3] for r in log)
    # the threads' waits on Meta add up to more than the wall time only if they overlapped
    assert metadata["meta_wait_seconds"] > metadata["fetch_wall_seconds"] > 0
    assert 0 < metadata["meta_wait_share"] <= 1

    monkeypatch.setenv("META_FETCH_CONCURRENCY", "1")
    with dg.instance_for_test() as instance:
        again = pipeline.run(START, END, instance=instance)
        assert again.success
        sequential = raw_metadata(instance, again.run_id)
    assert raw_rows(pipeline.engine) == parallel
    assert sequential["fetch_concurrency"] == 1
    assert sequential["meta_wait_seconds"] < sequential["fetch_wall_seconds"]


def test_a_rejected_token_fails_only_its_organization_when_fetching_in_parallel(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo-org-1's token (two ad accounts) is revoked: both are recorded as failed, the token is
    never retried, its account is NEEDS_REAUTH, and the other organizations equal the truth."""
    monkeypatch.setenv("META_FETCH_CONCURRENCY", "4")
    org1 = next(o for o in pipeline.sandbox.world.organizations if o.organization_id == "demo-org-1")
    pipeline.sandbox.add_token(org1.token, "demo-org-1", revoked=True)
    result = pipeline.run(START, END)
    assert not result.success
    assert "organization demo-org-1, ad account act_1000000001" in failure_text(result)

    healthy = [r for r in spend_rows(pipeline.engine) if r[0] != "demo-org-1"]
    assert sort_rows(healthy) == truth_rows(pipeline, ["demo-org-2", "demo-org-3"])
    assert not spend_rows(pipeline.engine, "demo-org-1")
    failed = {(o, a) for o, a, status, *_ in fetch_log(pipeline.engine, result.run_id) if status == "FAILED"}
    assert failed == {("demo-org-1", "act_1000000001"), ("demo-org-1", "act_1000000002")}
    with pipeline.engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(connected_account.c.organization_id, connected_account.c.status)).all())
    assert statuses == {"demo-org-1": "NEEDS_REAUTH", "demo-org-2": "CONNECTED", "demo-org-3": "CONNECTED"}
    # a rejected token is not retried: at most one call per ad account that had already started
    fingerprint = hashlib.sha256(org1.token.encode()).hexdigest()[:12]
    with_revoked = [r for r in pipeline.sandbox.requests_log() if r["token_fingerprint"] == fingerprint]
    assert 1 <= len(with_revoked) <= 2
    assert all(r["status"] == 400 for r in with_revoked)


def test_high_app_usage_slows_every_ad_account(
    sandbox: Sandbox, sandbox_server: SandboxServer, api_settings: MetaApiSettings, engine: sa.Engine
) -> None:
    """Another caller has just used 90% of the app's calls: the five ad accounts' threads consult
    one app pacer, so every one of them waits its turn; nothing is refused and the rows are the truth."""
    # The 90 calls stay in the app's window for 8 s: every ad account's second call must come before
    # they leave it, which takes well under a second, and a few on a loaded machine (or under
    # libfaketime, whose clock calls are slower): with a 4 s window one ad account now and then made
    # its second call after the others' calls had left it and had no turn to wait.
    sandbox.configure(app_rate_limit_calls=100, app_rate_limit_window_seconds=8.0)
    settings = dataclasses.replace(api_settings, usage_window_seconds=8.0, retry_max_wait=9.0)
    app = AppPacer(settings.usage_slowdown_pct, settings.usage_window_seconds)
    accounts = {
        org.organization_id: [
            MetaAdAccount(
                org.organization_id, account, org.provider, None, MetaClient(org.token, settings, app_pacer=app)
            )
            for account in org.ad_accounts
        ]
        for org in sandbox.world.organizations
    }

    def other_caller(_: int) -> int:
        url, token = f"{settings.base_url}/act_2000000001", sandbox.world.organizations[1].token
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code

    # at once, so that all 90 are still in the window when the fetch starts, even on a slow machine
    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(other_caller, range(90))) == {200}
    before = len(sandbox.requests_log())
    since, until = dt.date.fromisoformat(START), dt.date.fromisoformat(END)
    report = ingest.fetch_organizations(
        engine,
        sorted(accounts),
        accounts.__getitem__,
        lambda _: None,
        since,
        until,
        run_id="app-usage",
        window_days=92,
        concurrency=5,
    )
    assert not report.failures
    clients = [a.client for group in accounts.values() for a in group]
    assert all(c.stats.app_pacing_wait_seconds > 0 for c in clients), [c.stats for c in clients]
    assert all(c.stats.pacing_wait_seconds == 0 for c in clients)  # the ad accounts' own limits are far away
    assert [r for r in sandbox.requests_log()[before:] if r["status"] != 200] == []
    assert {(o.organization_id, o.ad_account_id) for o in report.outcomes} == ALL_ACCOUNTS
    assert all(o.throttle_wait_seconds > 0 for o in report.outcomes)  # the fetch log says so per ad account
    assert raw_as_truth(raw_rows(engine)) == raw_truth(sandbox)


def test_the_sandbox_limits_the_app_as_a_whole_with_code_4(sandbox: Sandbox, sandbox_server: SandboxServer) -> None:
    """Three calls for the app in any 60 s, spread over two ad accounts of two tokens: the fourth is
    refused with code 4, though neither ad account is near its own limit."""
    sandbox.configure(app_rate_limit_calls=3, app_rate_limit_window_seconds=60.0, rate_limit_calls=100)
    tokens = {o.organization_id: o.token for o in sandbox.world.organizations}
    calls = [("demo-org-1", "act_1000000001"), ("demo-org-2", "act_2000000001")] * 2
    answers = []
    for org, account in calls:
        answers.append(
            requests.get(
                f"{sandbox_server.url}/v26.0/{account}",
                headers={"Authorization": f"Bearer {tokens[org]}"},
                timeout=5,
            )
        )
    app_usage = [json.loads(a.headers["X-App-Usage"])["call_count"] for a in answers]
    account_usage = [json.loads(a.headers["X-Ad-Account-Usage"])["acc_id_util_pct"] for a in answers]
    assert [a.status_code for a in answers] == [200, 200, 200, 400]
    assert app_usage == [33, 67, 100, 100]
    assert account_usage == [1, 1, 2, 1]
    assert answers[3].json()["error"]["code"] == 4


def test_bench_accounts_leave_the_other_accounts_as_they_were() -> None:
    """`bench_accounts` adds accounts (one organization each) and changes nothing of the others."""
    from metaspend_pipeline.sandbox.world import World, bench_account_id, bench_organization_id

    plain, bench = World(7), World(7, bench_accounts=3)
    assert {k: v for k, v in bench.accounts.items() if k in plain.accounts} == plain.accounts
    assert bench.organizations[: len(plain.organizations)] == plain.organizations
    added = [o for o in bench.organizations if o.organization_id.startswith("bench-org-")]
    assert [(o.organization_id, o.ad_accounts) for o in added] == [
        (bench_organization_id(n), (bench_account_id(n),)) for n in (1, 2, 3)
    ]
    assert all(len(bench.accounts[bench_account_id(n)].ads) == 200 for n in (1, 2, 3))
    day = dt.date.fromisoformat(START)
    assert plain.truth("act_1000000001", "ad", day, day) == bench.truth("act_1000000001", "ad", day, day)


def test_the_app_pacer_spaces_the_calls_of_every_caller_together() -> None:
    """At 90% of the app's usage (10 calls of 1% left, a 60 s window), calls from any thread are
    spaced 60 / 11 s apart; below the slowdown they go at once again."""
    from metaspend_pipeline.meta.throttle import Usage

    now = [0.0]
    pacer = AppPacer(85, 60, clock=lambda: now[0])
    assert [pacer.reserve(), pacer.reserve()] == [0.0, 0.0]
    pacer.observe(Usage(pct=90.0, figure="x-app-usage.call_count"))
    spacing = 60 / 11
    assert [pacer.reserve() for _ in range(3)] == pytest.approx([spacing, 2 * spacing, 3 * spacing])
    now[0] = 1.0
    assert pacer.reserve() == pytest.approx(4 * spacing - 1.0)
    pacer.observe(Usage(pct=40.0, figure="x-app-usage.call_count"))
    assert pacer.reserve() == 0.0
