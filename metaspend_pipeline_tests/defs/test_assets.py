"""The assets materialized through Dagster against the sandbox, compared with the sandbox's truth."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline.storage.schema import (
    connected_account,
    meta_fetch_log,
    meta_raw_insights,
    meta_roas_by_campaign,
    meta_spend_daily,
)
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day, iso

START, END = iso(1), iso(7)
LEVELS = {"CAMPAIGN": "campaign", "ADSET": "adset", "AD": "ad"}


def spend_rows(engine: sa.Engine, organization: str | None = None) -> list[tuple]:
    t = meta_spend_daily
    query = sa.select(
        t.c.organization_id,
        t.c.ad_account_id,
        t.c.level,
        t.c.date,
        t.c.campaign_id,
        t.c.adset_id,
        t.c.ad_id,
        t.c.currency,
        t.c.spend,
        t.c.impressions,
        t.c.clicks,
    ).order_by(t.c.organization_id, t.c.ad_account_id, t.c.level, t.c.date, t.c.campaign_id, t.c.adset_id, t.c.ad_id)
    if organization:
        query = query.where(t.c.organization_id == organization)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def truth_rows(pipeline: Pipeline, organizations: list[str] | None = None, start: str = START, end: str = END) -> list:
    since, until = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    rows = []
    for org in pipeline.sandbox.world.organizations:
        if organizations and org.organization_id not in organizations:
            continue
        for account in org.ad_accounts:
            for level, meta_level in LEVELS.items():
                for r in pipeline.sandbox.world.truth(account, meta_level, since, until):
                    rows.append(
                        (
                            org.organization_id,
                            account,
                            level,
                            dt.date.fromisoformat(r["date"]),
                            r["campaign_id"],
                            r["adset_id"],
                            r["ad_id"],
                            r["currency"],
                            Decimal(r["spend"]).quantize(Decimal("0.01")),
                            r["impressions"],
                            r["clicks"],
                        )
                    )
    return sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r[:7]))


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message, causes included."""
    return "\n".join(
        e.event_specific_data.error.to_string() for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    )


def sort_rows(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r[:7]))


@pytest.mark.both_backends
def test_a_range_equals_the_sandbox_truth_at_every_level(pipeline: Pipeline) -> None:
    result = pipeline.run(START, END)
    assert result.success
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline)
    # the account totals, kept raw for reconciliation, equal the truth too
    with pipeline.engine.connect() as conn:
        raw_accounts = conn.execute(
            sa.select(sa.func.count()).select_from(meta_raw_insights).where(meta_raw_insights.c.level == "ACCOUNT")
        ).scalar_one()
    expected = sum(
        len(pipeline.sandbox.world.truth(a, "account", day(1), day(7)))
        for o in pipeline.sandbox.world.organizations
        for a in o.ad_accounts
    )
    assert raw_accounts == expected
    # every check passes; the version's verdict depends on the day (test_ui_events pins it to the table)
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name != "meta_api_version_current")


def test_windows_cover_every_day_once() -> None:
    from metaspend_pipeline.ingest import windows

    assert list(windows(day(1), day(8), 3)) == [(day(1), day(3)), (day(4), day(6)), (day(7), day(8))]
    assert list(windows(day(1), day(6), 3)) == [(day(1), day(3)), (day(4), day(6))]
    assert list(windows(day(1), day(3), 1)) == [(day(1), day(1)), (day(2), day(2)), (day(3), day(3))]
    assert list(windows(day(1), day(1), 92)) == [(day(1), day(1))]


def test_a_range_over_several_fetch_windows_equals_the_sandbox_truth(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight days in windows of 3 (1-3, 4-6, 7-8): no day lost or doubled at a window's edge, in the
    fetch, the spend and ROAS, each day compared with the sandbox's truth."""
    monkeypatch.setenv("META_FETCH_WINDOW_DAYS", "3")
    start, end = iso(1), iso(8)
    result = pipeline.run(start, end)
    assert result.success
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, start=start, end=end)
    # three insight series per ad account and level: one per window
    insight_ranges = {
        r["params"]["time_range"]
        for r in pipeline.sandbox.requests_log()
        if r["path"].endswith("/insights") and r["method"] == "GET"
    }
    assert {json.loads(t)["since"] for t in insight_ranges} == {iso(1), iso(4), iso(7)}
    with pipeline.engine.connect() as conn:
        raw_accounts = conn.execute(
            sa.select(meta_raw_insights.c.ad_account_id, meta_raw_insights.c.date, meta_raw_insights.c.spend).where(
                meta_raw_insights.c.level == "ACCOUNT"
            )
        ).all()
        roas = conn.execute(
            sa.select(
                meta_roas_by_campaign.c.organization_id,
                meta_roas_by_campaign.c.date,
                meta_roas_by_campaign.c.campaign_id,
                meta_roas_by_campaign.c.spend,
            )
        ).all()
    world = pipeline.sandbox.world
    accounts = [a for o in world.organizations for a in o.ad_accounts]
    expected_accounts = sorted(
        (a, dt.date.fromisoformat(r["date"]), Decimal(r["spend"]).quantize(Decimal("0.01")))
        for a in accounts
        for r in world.truth(a, "account", day(1), day(8))
    )
    assert sorted((a, d, Decimal(s)) for a, d, s in raw_accounts) == expected_accounts
    assert {d for _, d, _ in expected_accounts} == {day(n) for n in range(1, 9)}
    campaign_spend: dict[tuple[str, dt.date, str], Decimal] = {}
    for org in world.organizations:
        for a in org.ad_accounts:
            for r in world.truth(a, "campaign", day(1), day(8)):
                key = (org.organization_id, dt.date.fromisoformat(r["date"]), r["campaign_id"])
                campaign_spend[key] = campaign_spend.get(key, Decimal(0)) + Decimal(r["spend"])
    assert {(o, d, c): s for o, d, c, s in roas} == {k: v.quantize(Decimal("0.01")) for k, v in campaign_spend.items()}


def test_a_range_costs_pages_not_days(pipeline: Pipeline) -> None:
    """Seven days cost one request series per level, not one per day."""
    assert pipeline.run(START, END).success
    insight_calls = [
        r for r in pipeline.sandbox.requests_log() if r["path"].endswith("/insights") and r["method"] == "GET"
    ]
    # 5 ad accounts x 4 levels, each fitting in one page of 500 rows
    assert len(insight_calls) == 5 * 4


def test_a_single_partition(pipeline: Pipeline) -> None:
    from metaspend_pipeline.definitions import load

    result = (
        load().resolve_job_def("meta_spend_job").execute_in_process(partition_key=iso(3), resources=pipeline.resources)
    )
    assert result.success
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, start=iso(3), end=iso(3))


def test_a_rerun_leaves_identical_rows(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END).success
    t = meta_spend_daily
    with pipeline.engine.connect() as conn:
        before = conn.execute(sa.select(t).order_by(t.c.id)).all()
        raw_before = conn.execute(sa.select(sa.func.count()).select_from(meta_raw_insights)).scalar_one()
    assert pipeline.run(START, END).success
    with pipeline.engine.connect() as conn:
        after = conn.execute(sa.select(t).order_by(t.c.id)).all()
        raw_after = conn.execute(sa.select(sa.func.count()).select_from(meta_raw_insights)).scalar_one()
    assert after == before  # same ids, values and timestamps: nothing was rewritten
    assert raw_after == raw_before


def test_rows_meta_no_longer_returns_are_removed(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END).success
    now = dt.datetime.now(dt.UTC)
    ghost = {
        "organization_id": "demo-org-1",
        "provider": "INSTAGRAM",
        "date": day(2),
        "level": "AD",
        "ad_account_id": "act_1000000001",
        "campaign_id": "1",
        "adset_id": "2",
        "ad_id": "999",
        "currency": "USD",
        "spend": Decimal("5.00"),
        "impressions": 1,
        "clicks": 0,
        "created_at": now,
        "updated_at": now,
    }
    elsewhere = {**ghost, "organization_id": "other-org", "ad_account_id": "act_5", "ad_id": "998"}
    with pipeline.engine.begin() as conn:
        conn.execute(meta_spend_daily.insert(), [ghost, elsewhere])
    assert pipeline.run(START, END).success
    rows = spend_rows(pipeline.engine)
    assert not [r for r in rows if r[6] == "999"]
    # another organization's rows are out of scope
    assert [r for r in rows if r[6] == "998"] == [
        ("other-org", "act_5", "AD", day(2), "1", "2", "998", "USD", Decimal("5.00"), 1, 0)
    ]
    assert sort_rows([r for r in rows if r[0] != "other-org"]) == truth_rows(pipeline)


def test_an_expired_token_fails_only_its_organization(pipeline: Pipeline) -> None:
    """demo-org-2's token is rejected: its account becomes NEEDS_REAUTH, the run fails naming it,
    and demo-org-1 and demo-org-3 are written through every asset."""
    assert pipeline.run(START, START).success
    before_org2 = spend_rows(pipeline.engine, "demo-org-2")
    org2 = next(o for o in pipeline.sandbox.world.organizations if o.organization_id == "demo-org-2")
    pipeline.sandbox.add_token(org2.token, "demo-org-2", revoked=True)

    with dg.instance_for_test() as instance:
        result = pipeline.run(START, END, instance=instance)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "meta_raw_insights_every_organization_fetched"
        assert "organization demo-org-2, ad account act_2000000001" in failure_text(result)
        assert "NEEDS_REAUTH" in failure_text(result)
        materialized = instance.get_materialized_partitions(dg.AssetKey("meta_roas_by_campaign"))
        assert iso(7) in materialized
        records = instance.all_logs(result.run_id)
    assert org2.token not in "\n".join(r.user_message or "" for r in records)

    assert spend_rows(pipeline.engine, "demo-org-2") == before_org2  # nothing lost
    healthy = [r for r in spend_rows(pipeline.engine) if r[0] != "demo-org-2"]
    assert sort_rows(healthy) == truth_rows(pipeline, ["demo-org-1", "demo-org-3"])
    with pipeline.engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(connected_account.c.organization_id, connected_account.c.status)).all())
        roas_orgs = set(conn.execute(sa.select(meta_roas_by_campaign.c.organization_id).distinct()).scalars())
    assert statuses == {"demo-org-1": "CONNECTED", "demo-org-2": "NEEDS_REAUTH", "demo-org-3": "CONNECTED"}
    assert {"demo-org-1", "demo-org-3"} <= roas_orgs

    # until someone reconnects or disconnects it, every run says so; it never drops out in silence
    again = pipeline.run(END, END)
    assert not again.success
    assert "organization demo-org-2 (its accounts are NEEDS_REAUTH)" in failure_text(again)


def test_a_token_past_its_stored_expiry_marks_the_account_needs_reauth(pipeline: Pipeline) -> None:
    from metaspend_pipeline.storage.schema import oauth_token

    with pipeline.engine.begin() as conn:
        account_id = conn.execute(
            sa.select(connected_account.c.id).where(connected_account.c.organization_id == "demo-org-3")
        ).scalar_one()
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == account_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        )
    result = pipeline.run(START, START)
    assert not result.success
    assert "No valid access token found for organization demo-org-3 (every stored token has expired)" in failure_text(
        result
    )
    with pipeline.engine.connect() as conn:
        status = conn.execute(sa.select(connected_account.c.status).where(connected_account.c.id == account_id))
        assert status.scalar_one() == "NEEDS_REAUTH"
    assert {r[0] for r in spend_rows(pipeline.engine)} == {"demo-org-1", "demo-org-2"}


def test_a_malformed_stored_token_fails_only_its_organization(pipeline: Pipeline) -> None:
    """A token another application stored with a line break inside: a clear failure, never the token."""
    from metaspend_pipeline.storage import accounts as store
    from metaspend_pipeline.tokens import KeyRing

    bad = "EAAbroken" + "8" * 20 + "\n" + "9" * 20
    with pipeline.engine.begin() as conn:
        account = store.find_account(conn, "demo-org-3", "INSTAGRAM")
        [token] = [t for t in store.stored_tokens(conn, "demo-org-3")]
        store.update_token(conn, token.token_id, KeyRing.from_env().encrypt(bad, account.id), None, refreshed=False)
    with dg.instance_for_test() as instance:
        result = pipeline.run(START, START, instance=instance)
        records = "\n".join(r.user_message or "" for r in instance.all_logs(result.run_id))
    assert not result.success
    text = failure_text(result)
    assert "organization demo-org-3: the access token contains white space" in text
    assert "8" * 20 not in text + records
    assert {r[0] for r in spend_rows(pipeline.engine)} == {"demo-org-1", "demo-org-2"}


def test_a_meta_error_on_one_ad_account_keeps_what_was_there(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END).success
    before = spend_rows(pipeline.engine, "demo-org-1")
    pipeline.sandbox.add_faults([{"kind": "server_error", "match": "act_1000000002/insights", "times": 1000}])
    result = pipeline.run(START, END)
    assert not result.success
    assert spend_rows(pipeline.engine, "demo-org-1") == before
    with pipeline.engine.connect() as conn:
        failed = conn.execute(
            sa.select(meta_fetch_log.c.organization_id, meta_fetch_log.c.ad_account_id).where(
                meta_fetch_log.c.status == "FAILED"
            )
        ).all()
    assert failed == [("demo-org-1", "act_1000000002")]


def test_a_backfill_can_be_limited_to_one_organization(pipeline: Pipeline) -> None:
    config = {"ops": {"meta_raw_insights": {"config": {"organizations": ["demo-org-3"]}}}}
    result = pipeline.run(START, END, run_config=config)
    assert result.success
    assert {r[0] for r in spend_rows(pipeline.engine)} == {"demo-org-3"}
    assert sort_rows(spend_rows(pipeline.engine)) == truth_rows(pipeline, ["demo-org-3"])
    asked = {r["path"].split("/")[2] for r in pipeline.sandbox.requests_log() if "/act_" in r["path"]}
    assert asked == {"act_3000000001", "act_3000000002"}


def test_fetch_now_for_one_date_and_ad_account(pipeline: Pipeline) -> None:
    """The seed product's "fetch now" is a partition launch with run config naming the ad account."""
    config = {"ops": {"meta_raw_insights": {"config": {"ad_accounts": ["act_1000000002"]}}}}
    result = pipeline.run(iso(5), run_config=config)
    assert result.success
    rows = spend_rows(pipeline.engine)
    assert {(r[1], r[3]) for r in rows} == {("act_1000000002", day(5))}


def test_unknown_organization_or_ad_account_in_config_is_a_clear_failure(pipeline: Pipeline) -> None:
    for config, message in (
        ({"organizations": ["nobody"]}, "organization nobody has no CONNECTED Meta account"),
        ({"ad_accounts": ["act_42"]}, "ad account act_42 is not connected to any organization"),
        ({"ad_accounts": ["42x"]}, "ad account id '42x' is malformed"),
    ):
        result = pipeline.run(START, run_config={"ops": {"meta_raw_insights": {"config": config}}})
        assert not result.success
        assert message in failure_text(result)


def test_organizations_are_isolated(pipeline: Pipeline) -> None:
    """Two organizations read the same ad account, so the same campaign ids: neither sees the other's leads."""
    from metaspend_pipeline.credentials import store_connection
    from metaspend_pipeline.tokens import KeyRing

    org1 = next(o for o in pipeline.sandbox.world.organizations if o.organization_id == "demo-org-1")
    pipeline.sandbox.add_token("EAAtwin" + "7" * 30, "demo-org-1")
    with pipeline.engine.begin() as conn:
        store_connection(
            conn, KeyRing.from_env(), "twin-org", "FACEBOOK", list(org1.ad_accounts), "EAAtwin" + "7" * 30, None
        )
    campaign = pipeline.sandbox.world.accounts["act_1000000001"].campaigns[0].id
    with pipeline.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lead (id, organization_id, created_at, campaign_id) VALUES ('l1', 'demo-org-1', :at, :c)"
            ),
            {"at": dt.datetime.combine(day(3), dt.time(18), dt.UTC), "c": campaign},
        )
        conn.execute(
            sa.text(
                "INSERT INTO sale (id, organization_id, lead_id, amount, currency) VALUES ('s1', 'demo-org-1', 'l1', '100.00', 'USD')"
            )
        )
        # a sale of the twin organization that points at demo-org-1's lead must not count anywhere
        conn.execute(
            sa.text(
                "INSERT INTO sale (id, organization_id, lead_id, amount, currency) VALUES ('s2', 'twin-org', 'l1', '999.00', 'USD')"
            )
        )
    assert pipeline.run(START, END).success
    t = meta_roas_by_campaign
    with pipeline.engine.connect() as conn:
        rows = {
            r.organization_id: r
            for r in conn.execute(sa.select(t).where(t.c.campaign_id == campaign).where(t.c.date == day(3)))
        }
    assert set(rows) == {"demo-org-1", "twin-org"}
    assert (rows["demo-org-1"].leads_count, rows["demo-org-1"].sales_count, rows["demo-org-1"].revenue) == (
        1,
        1,
        Decimal("100.00"),
    )
    assert (rows["twin-org"].leads_count, rows["twin-org"].sales_count) == (0, 0)
    assert rows["demo-org-1"].spend == rows["twin-org"].spend > 0


def test_materializations_carry_numbers_per_partition(pipeline: Pipeline) -> None:
    with dg.instance_for_test() as instance:
        assert pipeline.run(START, iso(2), instance=instance).success
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("meta_raw_insights"), asset_partitions=[iso(2)]), limit=1
        ).records
        spend_records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("meta_spend_daily"), asset_partitions=[iso(2)]), limit=1
        ).records
    metadata = {k: v.value for k, v in records[0].asset_materialization.metadata.items()}
    truth = pipeline.sandbox.world.truth("act_1000000001", "ad", day(2), day(2))
    assert metadata["rows_ad"] == len(truth) + sum(
        len(pipeline.sandbox.world.truth(a, "ad", day(2), day(2)))
        for a in ("act_1000000002", "act_2000000001", "act_3000000001", "act_3000000002")
    )
    usd = sum(Decimal(r["spend"]) for r in pipeline.sandbox.world.truth("act_1000000001", "account", day(2), day(2)))
    assert Decimal(str(metadata["spend_USD"])) == usd
    assert "accounts_fetched" not in metadata, "run-level numbers are not a day's"
    spend_metadata = {k: v.value for k, v in spend_records[0].asset_materialization.metadata.items()}
    assert spend_metadata["rows_ad"] == metadata["rows_ad"]


def test_readers_never_see_a_half_written_day(pipeline: Pipeline) -> None:
    """While `meta_spend_daily` is rewritten with new numbers, a reader sees the old day or the new
    one, never a mix."""
    import threading

    assert pipeline.run(START, START).success
    t, r = meta_spend_daily, meta_raw_insights

    def ad_total() -> Decimal:
        with pipeline.engine.connect() as conn:
            return sum(
                conn.execute(
                    sa.select(t.c.spend)
                    .where(t.c.organization_id == "demo-org-1")
                    .where(t.c.date == day(1))
                    .where(t.c.level == "AD")
                ).scalars(),
                Decimal(0),
            )

    old = ad_total()
    with pipeline.engine.begin() as conn:  # Meta restated the day: every amount doubled, as a fetch stores it
        for row_id, row in conn.execute(sa.select(r.c.id, r.c.row).where(r.c.organization_id == "demo-org-1")).all():
            row = dict(row)
            row["spend"] = str(Decimal(row["spend"]) * 2)
            conn.execute(r.update().where(r.c.id == row_id).values(row=row, spend=Decimal(row["spend"])))
    seen: set[Decimal] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(ad_total())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert pipeline.run(START, START, asset_selection=[dg.AssetKey("meta_spend_daily")]).success
    finally:
        stop.set()
        reader.join()
    assert ad_total() == 2 * old
    assert seen <= {old, 2 * old}
    assert old in seen


def test_one_organization_failing_in_the_spend_step_does_not_stop_the_others(pipeline: Pipeline) -> None:
    """The spend and ROAS steps isolate organizations as the fetch does: the others are written,
    the failed one keeps what it had, and the run fails naming it."""
    assert pipeline.run(START, START).success
    t, r = meta_spend_daily, meta_raw_insights
    before = {org: spend_rows(pipeline.engine, org) for org in ("demo-org-1", "demo-org-2")}
    with pipeline.engine.begin() as conn:
        # Meta restated demo-org-1's day; demo-org-2's raw rows carry a value the table refuses
        conn.execute(r.update().where(r.c.organization_id == "demo-org-1").values(spend=r.c.spend + Decimal("1.00")))
        conn.execute(r.update().where(r.c.organization_id == "demo-org-2").values(provider="TIKTOK"))
    result = pipeline.run(START, START, asset_selection=[dg.AssetKey("meta_spend_daily")])
    assert not result.success
    assert "demo-org-2" in failure_text(result)
    assert "demo-org-1" not in failure_text(result)
    assert spend_rows(pipeline.engine, "demo-org-2") == before["demo-org-2"]
    after = spend_rows(pipeline.engine, "demo-org-1")
    assert [row[8] for row in after] == [row[8] + Decimal("1.00") for row in before["demo-org-1"]]
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.provider == "TIKTOK")).scalar() == 0
