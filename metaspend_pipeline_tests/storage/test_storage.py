"""The write paths themselves: bulk loads, the raw rows' key, the spend merge, and the organization lock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.schema import meta_object_account, meta_raw_insights, meta_spend_daily

DAY = dt.date(2026, 10, 1)
NOW = dt.datetime(2026, 10, 20, 6, 0, tzinfo=dt.UTC)


Row = InsightRow  # a parsed row, as the client hands it to the raw store


def ad_rows(n: int, spend: str = "1.00") -> list[Row]:
    return [
        Row(
            ad_account_id="act_1",
            level="ad",
            date=DAY + dt.timedelta(days=i % 3),
            campaign_id="1",
            adset_id="2",
            ad_id=str(1000 + i),
            currency="USD",
            spend=Decimal(spend),
            impressions=i,
            clicks=0,
            raw={"ad_id": str(1000 + i), "spend": spend},
        )
        for i in range(n)
    ]


def write_raw(conn: sa.Connection, rows: list[Row], account: str = "act_1", org: str = "org-1") -> int:
    return raw_store.replace_raw_insights(
        conn,
        organization_id=org,
        provider="INSTAGRAM",
        ad_account_id=account,
        level="AD",
        since=DAY,
        until=DAY + dt.timedelta(days=2),
        rows=rows,
        fetched_at=NOW,
    )


def refresh(conn: sa.Connection, account: str = "act_1") -> spend_store.MergeStats:
    return spend_store.refresh_spend(conn, "org-1", [account], DAY, DAY + dt.timedelta(days=2), NOW)


def test_load_rows_round_trips_every_type_exactly(engine: sa.Engine) -> None:
    values = (
        "org-1",
        "FACEBOOK",
        "act_9",
        "AD",
        DAY,
        {"spend": "9999999999999.99", "nested": [1, "x"]},
        NOW,
        "1",
        "2",
        "3",
        "JPY",
        Decimal("9999999999999.99"),
        2**62,
        None,
    )
    with engine.begin() as conn:
        assert load_rows(conn, meta_raw_insights, raw_store.RAW_COLUMNS, [values]) == 1
    with engine.connect() as conn:
        row = conn.execute(sa.select(*[meta_raw_insights.c[c] for c in raw_store.RAW_COLUMNS])).one()
    assert row[:5] == values[:5]
    assert row[5] == values[5]
    assert row[6].replace(tzinfo=dt.UTC) == NOW
    assert row[7:] == values[7:]
    assert isinstance(row[11], Decimal)


def test_load_rows_refuses_money_it_would_have_to_round(engine: sa.Engine) -> None:
    values = ("org-1", "FACEBOOK", "act_9", "AD", DAY, {}, NOW, "1", "2", "3", "USD", Decimal("0.025"), 1, 1)
    with pytest.raises(ValueError, match=r"0\.025 has more than 2 decimal places"), engine.begin() as conn:
        load_rows(conn, meta_raw_insights, raw_store.RAW_COLUMNS, [values])


def test_a_raw_row_cannot_be_stored_twice(engine: sa.Engine) -> None:
    rows = ad_rows(2)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        write_raw(conn, [rows[0], rows[1], rows[0]])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(meta_raw_insights)).scalar_one() == 0


def test_the_merge_updates_changes_keeps_the_rest_and_deletes_what_is_gone(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        write_raw(conn, ad_rows(6))
        first = refresh(conn)
        # another ad account of the organization, outside the scope: must survive
        write_raw(conn, [dataclasses.replace(ad_rows(1)[0], ad_id="2000")], account="act_2")
        refresh(conn, account="act_2")
    t = meta_spend_daily
    with engine.connect() as conn:
        before = {r.ad_id: r for r in conn.execute(sa.select(t).where(t.c.ad_account_id == "act_1"))}
    changed = ad_rows(5)
    changed[0] = dataclasses.replace(changed[0], spend=Decimal("9.99"))
    with engine.begin() as conn:
        write_raw(conn, changed)
        second = refresh(conn)
        third = refresh(conn)
    with engine.connect() as conn:
        after = {r.ad_id: r for r in conn.execute(sa.select(t).where(t.c.ad_account_id == "act_1"))}
        other = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.ad_account_id == "act_2")).scalar_one()
        objects = set(conn.execute(sa.select(meta_object_account.c.object_id, meta_object_account.c.ad_account_id)))
    assert (first.staged, first.written, first.deleted) == (6, 6, 0)
    assert (second.staged, second.written, second.deleted, second.unchanged) == (5, 1, 1, 4)
    assert (third.written, third.deleted, third.unchanged) == (0, 0, 5)
    assert set(after) == set(before) - {"1005"}
    assert after["1000"].spend == Decimal("9.99")
    assert after["1000"].created_at == before["1000"].created_at
    assert after["1001"] == before["1001"]  # untouched, updated_at included
    assert other == 1
    # every ad that spent is tied to its ad account, for the ROAS step
    assert objects == {(str(1000 + i), "act_1") for i in range(6)} | {("2000", "act_2")}


def test_the_merge_reports_rows_per_day_and_spend_per_currency(engine: sa.Engine) -> None:
    rows = ad_rows(7, spend="0.10")
    with engine.begin() as conn:
        write_raw(conn, rows)
        stats = refresh(conn)
    assert dict(stats.rows_by_day_level) == {
        (DAY, "AD"): 3,
        (DAY + dt.timedelta(days=1), "AD"): 2,
        (DAY + dt.timedelta(days=2), "AD"): 2,
    }


@pytest.mark.postgres
def test_overlapping_writers_of_one_organization_wait_for_each_other(postgres_url: str) -> None:
    """Two transactions replacing the same scope at once: the second waits for the first's commit
    and then replaces its rows, instead of both inserting (READ COMMITTED). SQLite needs no lock:
    its engine begins every transaction with BEGIN IMMEDIATE."""
    from metaspend_pipeline.storage import db

    engine = db.engine_for(postgres_url)
    first_holds_lock = threading.Event()
    release_first = threading.Event()
    order: list[str] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with engine.begin() as conn:
                write_raw(conn, ad_rows(5, spend="1.00"))
                first_holds_lock.set()
                release_first.wait(10)
                order.append("first commits")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def second() -> None:
        try:
            first_holds_lock.wait(10)
            with engine.begin() as conn:
                write_raw(conn, ad_rows(5, spend="2.00"))
                order.append("second wrote")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_holds_lock.wait(10)
    threads[1].join(0.5)  # the second writer is blocked on the lock, not done
    assert threads[1].is_alive()
    release_first.set()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert order == ["first commits", "second wrote"]
    with engine.connect() as conn:
        spends = conn.execute(sa.select(meta_raw_insights.c.spend)).scalars().all()
    assert spends == [Decimal("2.00")] * 5


# --- the raw store's scopes, ad account metadata and fetch log (mutation testing, docs/development.md) ---


def raw_keys(conn: sa.Connection) -> list[tuple]:
    t = meta_raw_insights
    query = sa.select(t.c.organization_id, t.c.ad_account_id, t.c.level, t.c.date, t.c.ad_id, t.c.spend, t.c.provider)
    return sorted(tuple(r) for r in conn.execute(query))


def test_a_raw_replace_touches_only_its_organization_ad_account_level_and_days(engine: sa.Engine) -> None:
    one = ad_rows(1)[0]
    before = DAY - dt.timedelta(days=1)
    after = DAY + dt.timedelta(days=3)

    def write(org: str, account: str, level: str, day: dt.date, spend: str, since: dt.date, until: dt.date) -> int:
        with engine.begin() as conn:
            return raw_store.replace_raw_insights(
                conn,
                organization_id=org,
                provider="FACEBOOK",
                ad_account_id=account,
                level=level,
                since=since,
                until=until,
                rows=[dataclasses.replace(one, date=day, spend=Decimal(spend))],
                fetched_at=NOW,
            )

    for org, account, level, day in [
        ("org-1", "act_1", "AD", DAY),  # the scope replaced below
        ("org-1", "act_1", "AD", DAY + dt.timedelta(days=2)),  # its last day: replaced too
        ("org-1", "act_1", "AD", before),  # the day before the range
        ("org-1", "act_1", "AD", after),  # the day after
        ("org-1", "act_1", "ADSET", DAY),  # another level
        ("org-1", "act_2", "AD", DAY),  # another ad account
        ("org-2", "act_1", "AD", DAY),  # another organization
    ]:
        assert write(org, account, level, day, "1.00", day, day) == 1
    assert write("org-1", "act_1", "AD", DAY + dt.timedelta(days=1), "2.00", DAY, DAY + dt.timedelta(days=2)) == 1
    with engine.connect() as conn:
        assert raw_keys(conn) == sorted(
            [
                ("org-1", "act_1", "AD", before, "1000", Decimal("1.00"), "FACEBOOK"),
                ("org-1", "act_1", "AD", DAY + dt.timedelta(days=1), "1000", Decimal("2.00"), "FACEBOOK"),
                ("org-1", "act_1", "AD", after, "1000", Decimal("1.00"), "FACEBOOK"),
                ("org-1", "act_1", "ADSET", DAY, "1000", Decimal("1.00"), "FACEBOOK"),
                ("org-1", "act_2", "AD", DAY, "1000", Decimal("1.00"), "FACEBOOK"),
                ("org-2", "act_1", "AD", DAY, "1000", Decimal("1.00"), "FACEBOOK"),
            ]
        )
        assert raw_store.raw_scopes(conn, DAY, DAY + dt.timedelta(days=2)) == {
            "org-1": ["act_1", "act_2"],
            "org-2": ["act_1"],
        }
        assert raw_store.raw_scopes(conn, before, before) == {"org-1": ["act_1"]}
        assert raw_store.raw_scopes(conn, after, after + dt.timedelta(days=5)) == {"org-1": ["act_1"]}
        assert raw_store.raw_scopes(conn, DAY, DAY, organizations=["org-2"]) == {"org-2": ["act_1"]}
        assert raw_store.raw_scopes(conn, DAY, DAY, organizations=[]) == {}
        assert raw_store.raw_scopes(conn, after + dt.timedelta(days=1), after + dt.timedelta(days=9)) == {}


def test_ad_account_metadata_is_inserted_then_updated_in_place(engine: sa.Engine) -> None:
    from metaspend_pipeline.storage.schema import meta_ad_account

    with engine.begin() as conn:
        raw_store.upsert_ad_account(
            conn,
            ad_account_id="act_1",
            name="Old name",
            currency="USD",
            timezone_name="America/Los_Angeles",
            timezone_offset_hours_utc=Decimal("-8"),
        )
        raw_store.upsert_ad_account(
            conn,
            ad_account_id="act_2",
            name=None,
            currency="JPY",
            timezone_name="Asia/Tokyo",
            timezone_offset_hours_utc=None,
        )
    with engine.begin() as conn:
        raw_store.upsert_ad_account(
            conn,
            ad_account_id="act_1",
            name="New name",
            currency="EUR",
            timezone_name="Europe/Berlin",
            timezone_offset_hours_utc=Decimal("1"),
        )
    t = meta_ad_account
    with engine.connect() as conn:
        rows = {r.ad_account_id: r for r in conn.execute(sa.select(t))}
        info = raw_store.ad_account_info(conn)
    assert {k: (r.name, r.currency, r.timezone_name, r.timezone_offset_hours_utc) for k, r in rows.items()} == {
        "act_1": ("New name", "EUR", "Europe/Berlin", Decimal("1")),
        "act_2": (None, "JPY", "Asia/Tokyo", None),
    }
    assert rows["act_1"].updated_at is not None
    assert info == {
        "act_1": raw_store.AdAccountInfo("act_1", "EUR", "Europe/Berlin"),
        "act_2": raw_store.AdAccountInfo("act_2", "JPY", "Asia/Tokyo"),
    }


def test_the_fetch_log_gives_back_a_runs_outcomes_in_order(engine: sa.Engine) -> None:
    outcomes = [
        raw_store.FetchOutcome("org-1", "act_1", DAY, DAY, "OK", None, 12, 3, 1.5),
        raw_store.FetchOutcome(
            "org-2", None, DAY, DAY + dt.timedelta(days=1), "FAILED", "organization org-2: no token"
        ),
        raw_store.FetchOutcome("org-1", "act_2", DAY, DAY, "OK", rows=0, requests=1),
    ]
    with engine.begin() as conn:
        for outcome in outcomes:
            raw_store.log_fetch(conn, "run-1", outcome)
        raw_store.log_fetch(conn, "run-2", dataclasses.replace(outcomes[0], rows=99))
    with engine.connect() as conn:
        assert raw_store.fetches_of_run(conn, "run-1") == outcomes
        assert raw_store.fetches_of_run(conn, "run-2") == [dataclasses.replace(outcomes[0], rows=99)]
        assert raw_store.fetches_of_run(conn, "run-3") == []


def insight(level: str, day: dt.date, ids: tuple[str | None, str | None, str | None], spend: str, **kw: object) -> Row:
    values: dict[str, object] = {"impressions": 10, "clicks": 1, "currency": "USD", **kw}
    return Row(
        ad_account_id="act_1",
        level=level.lower(),
        date=day,
        campaign_id=ids[0],
        adset_id=ids[1],
        ad_id=ids[2],
        spend=Decimal(spend),
        raw={"spend": spend},
        **values,  # type: ignore[arg-type]
    )


def replace_level(conn: sa.Connection, level: str, rows: list[Row], org: str = "org-1", account: str = "act_1") -> None:
    raw_store.replace_raw_insights(
        conn,
        organization_id=org,
        provider="FACEBOOK",
        ad_account_id=account,
        level=level,
        since=DAY,
        until=DAY + dt.timedelta(days=2),
        rows=rows,
        fetched_at=NOW,
    )


def spend_table(conn: sa.Connection) -> dict[tuple, tuple]:
    t = meta_spend_daily
    return {
        (r.organization_id, r.ad_account_id, r.date, r.level, r.campaign_id, r.adset_id, r.ad_id): (
            r.currency, r.spend, r.impressions, r.clicks, r.provider
        )
        for r in conn.execute(sa.select(t))
    }  # fmt: skip


def test_a_spend_refresh_makes_its_scope_equal_the_raw_rows_and_nothing_else(engine: sa.Engine) -> None:
    d0, d1, d2 = DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)
    with engine.begin() as conn:
        for account, org, c in (("act_1", "org-1", "1"), ("act_2", "org-1", "7"), ("act_1", "org-2", "1")):
            # ids are Meta's, unique across ad accounts: act_2's campaign is 7, its ad set 72, its ads 75 and 76
            adset, ads = ("2", ("5", "6")) if c == "1" else ("72", ("75", "76"))
            replace_level(
                conn, "ACCOUNT", [insight("account", d, (None, None, None), "9.00") for d in (d0, d1, d2)], org, account
            )
            replace_level(
                conn, "CAMPAIGN", [insight("campaign", d, (c, None, None), "3.00") for d in (d0, d1, d2)], org, account
            )
            replace_level(
                conn, "ADSET", [insight("adset", d, (c, adset, None), "3.00") for d in (d0, d1, d2)], org, account
            )
            replace_level(
                conn,
                "AD",
                [
                    insight("ad", d, (c, adset, ad), amount)
                    for d in (d0, d1, d2)
                    for ad, amount in zip(ads, ("1.25", "1.75"), strict=True)
                ],
                org,
                account,
            )
        first = spend_store.refresh_spend(conn, "org-1", ["act_1"], d0, d1, NOW)
        table = spend_table(conn)
    # the account level stays raw; the 3rd day, act_2 and org-2 are outside the scope
    assert (first.staged, first.written, first.deleted, first.unchanged) == (8, 8, 0, 0)
    assert dict(first.rows_by_day_level) == {
        (d0, "CAMPAIGN"): 1, (d0, "ADSET"): 1, (d0, "AD"): 2, (d1, "CAMPAIGN"): 1, (d1, "ADSET"): 1, (d1, "AD"): 2,
    }  # fmt: skip
    assert dict(first.spend_by_day_currency) == {(d0, "USD"): Decimal("3.00"), (d1, "USD"): Decimal("3.00")}
    assert table == {
        ("org-1", "act_1", d, level, "1", adset, ad): ("USD", Decimal(amount), 10, 1, "FACEBOOK")
        for d in (d0, d1)
        for level, adset, ad, amount in (
            ("CAMPAIGN", None, None, "3.00"), ("ADSET", "2", None, "3.00"), ("AD", "2", "5", "1.25"), ("AD", "2", "6", "1.75"),
        )
    }  # fmt: skip

    with engine.begin() as conn:
        assert spend_store.refresh_spend(conn, "org-1", ["act_1"], d2, d2, NOW).written == 4  # the 3rd day now
        assert spend_store.refresh_spend(conn, "org-1", ["act_2"], d0, d2, NOW).written == 12
        # one value changed per row, each in another column; ad 6 of the 1st day gone
        replace_level(
            conn,
            "AD",
            [
                insight("ad", d0, ("1", "2", "5"), "1.25", impressions=11),
                insight("ad", d1, ("1", "2", "5"), "1.25", clicks=2),
                insight("ad", d1, ("1", "2", "6"), "1.75", currency="EUR"),
                insight("ad", d2, ("1", "2", "5"), "1.30"),
                insight("ad", d2, ("1", "2", "6"), "1.75"),
            ],
        )
        before = spend_table(conn)
        second = spend_store.refresh_spend(conn, "org-1", ["act_1"], d0, d1, NOW)
        after = spend_table(conn)
    assert (second.staged, second.written, second.deleted, second.unchanged) == (7, 3, 1, 4)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    assert changed == {
        ("org-1", "act_1", d0, "AD", "1", "2", "5"): ("USD", Decimal("1.25"), 11, 1, "FACEBOOK"),
        ("org-1", "act_1", d1, "AD", "1", "2", "5"): ("USD", Decimal("1.25"), 10, 2, "FACEBOOK"),
        ("org-1", "act_1", d1, "AD", "1", "2", "6"): ("EUR", Decimal("1.75"), 10, 1, "FACEBOOK"),
    }
    assert set(before) - set(after) == {("org-1", "act_1", d0, "AD", "1", "2", "6")}
    assert after[("org-1", "act_1", d2, "AD", "1", "2", "5")][1] == Decimal("1.25")  # the 3rd day: not refreshed
    assert not any(k[0] == "org-2" for k in after)

    with engine.connect() as conn:
        assert spend_store.spend_summary(conn, d0, d1) == (15, {"USD": Decimal("12.00")})
        assert spend_store.spend_summary(conn, d2, d2, ["org-1"]) == (8, {"USD": Decimal("6.00")})
        assert spend_store.spend_summary(conn, d0, d2, ["org-2"]) == (0, {})


def test_raw_scopes_come_by_organization_then_ad_account(engine: sa.Engine) -> None:
    one = ad_rows(1)[0]
    with engine.begin() as conn:
        for org, account in (("org-b", "act_1"), ("org-a", "act_9"), ("org-a", "act_2"), ("org-b", "act_0")):
            raw_store.replace_raw_insights(
                conn, organization_id=org, provider="FACEBOOK", ad_account_id=account, level="AD",
                since=DAY, until=DAY, rows=[one], fetched_at=NOW,
            )  # fmt: skip
        scopes = raw_store.raw_scopes(conn, DAY, DAY + dt.timedelta(days=2))
    assert list(scopes.items()) == [("org-a", ["act_2", "act_9"]), ("org-b", ["act_0", "act_1"])]


@pytest.mark.postgres
def test_writers_of_two_organizations_do_not_wait_for_each_other(postgres_url: str) -> None:
    """The lock is the organization's own: org-2's replace goes through while org-1's is open."""
    from metaspend_pipeline.storage import db

    engine = db.engine_for(postgres_url)
    first_holds_lock = threading.Event()
    second_done = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with engine.begin() as conn:
                write_raw(conn, ad_rows(2), org="org-1")
                first_holds_lock.set()
                second_done.wait(10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert first_holds_lock.wait(10)
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # a wait on org-1's lock would fail here
            write_raw(conn, ad_rows(2), org="org-2")
            raw_store.upsert_ad_account(
                conn,
                ad_account_id="act_1",
                name=None,
                currency="USD",
                timezone_name="UTC",
                timezone_offset_hours_utc=None,
            )
            spend_store.refresh_spend(conn, "org-2", ["act_1"], DAY, DAY + dt.timedelta(days=2), NOW)
    finally:
        second_done.set()
        thread.join(10)
    assert errors == []
