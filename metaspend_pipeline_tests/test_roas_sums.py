"""The sums ROAS is made of (`storage.roas.group_sums`), read straight from the database: the order
the merge relies on, which leads and sales belong to an organization and a group, and Meta's
purchases under one action type."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.schema import (
    connected_account,
    lead,
    meta_ad_account,
    meta_conversions_daily,
    meta_object_account,
    meta_spend_daily,
    sale,
)
from metaspend_pipeline_tests.test_roas import D3, D4, D5, NOW, at, spend

D = Decimal
# Ids whose order as bytes (the merge's order, Python's) is neither their order as numbers nor the
# order of their insertion below: "10" < "100" < "9" < "B7" < "b6".
IDS = ("9", "b6", "100", "B7", "10")


def _organization(conn: sa.Connection, org: str, accounts: dict[str, tuple[str, str]]) -> None:
    conn.execute(
        connected_account.insert().values(
            id=f"ca-{org}", organization_id=org, provider="FACEBOOK", status="CONNECTED",
            ad_accounts=list(accounts), created_at=NOW, updated_at=NOW,
        )
    )  # fmt: skip
    for account, (currency, zone) in accounts.items():
        exists = sa.select(meta_ad_account.c.ad_account_id).where(meta_ad_account.c.ad_account_id == account)
        if conn.execute(exists).first() is None:
            conn.execute(
                meta_ad_account.insert().values(
                    ad_account_id=account, currency=currency, timezone_name=zone, updated_at=NOW
                )
            )


def _leads(conn: sa.Connection, org: str, rows: list[tuple[str, dt.datetime, str | None]]) -> None:
    conn.execute(
        lead.insert(),
        [{"id": i, "organization_id": org, "created_at": c, "campaign_id": cp} for i, c, cp in rows],
    )


def _sales(conn: sa.Connection, org: str, rows: list[tuple[str, str, str, str]]) -> None:
    conn.execute(
        sale.insert(),
        [
            {"id": i, "organization_id": org, "lead_id": lid, "amount": D(a), "currency": c, "closed_at": NOW}
            for i, lid, a, c in rows
        ],
    )


def _conversion(
    org: str, day: dt.date, campaign: str, action_type: str, count: int | None, value: str | None, currency: str = "USD"
) -> dict[str, object]:
    return {
        "organization_id": org, "date": day, "level": "CAMPAIGN", "ad_account_id": "act_1", "campaign_id": campaign,
        "adset_id": None, "ad_id": None, "action_type": action_type, "attribution_window": "default",
        "currency": currency, "count": count, "value": None if value is None else D(value), "updated_at": NOW,
    }  # fmt: skip


def _sums(engine: sa.Engine, org: str = "acme", since: dt.date = D4, until: dt.date = D5) -> dict[str, list]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # At scale PostgreSQL groups by hashing, which yields the groups in no order. Discouraged
            # from sorting, it hashes here too where it can: only an ORDER BY then orders the groups.
            conn.exec_driver_sql("SET enable_sort = off")
            conn.exec_driver_sql("SET jit = off")  # the sorts' penalty cost would make it compile every query
        sums = roas_store.group_sums(conn, org, "campaign", since, until, None)
        return {
            "spend": list(sums.spend),
            "leads": list(sums.leads),
            "sales": list(sums.sales),
            "meta": list(sums.meta_purchases),
        }


def _write_ids(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_1": ("USD", "UTC")})
        for day in (D5, D4):
            for n, campaign in enumerate(IDS):
                currency = ("USD", "EUR")[n % 2]  # ordered by currency first, the ids would not be in order
                conn.execute(
                    meta_spend_daily.insert(),
                    [spend(day, "CAMPAIGN", "act_1", campaign, None, None, f"{n + 1}.00", currency)],
                )
                conn.execute(
                    meta_conversions_daily.insert(),
                    [_conversion("acme", day, campaign, "purchase", 1, "2.00", currency)],
                )
                _leads(conn, "acme", [(f"L{day.day}-{campaign}", at(day, 12), campaign)])
                _sales(conn, "acme", [(f"S{day.day}-{campaign}", f"L{day.day}-{campaign}", "3.00", currency)])


def _assert_in_byte_order(engine: sa.Engine) -> None:
    keys = [(day, campaign) for day in (D4, D5) for campaign in sorted(IDS)]
    assert keys[:5] == [(D4, "10"), (D4, "100"), (D4, "9"), (D4, "B7"), (D4, "b6")]
    sums = _sums(engine)
    assert {name: [key for key, _ in stream] for name, stream in sums.items()} == {
        "spend": keys,
        "leads": keys,
        "sales": keys,
        "meta": keys,
    }
    assert sums["spend"][0] == ((D4, "10"), ("USD", D("5.00")))  # "10" is the fifth id written: USD, 5.00
    assert sums["leads"][0] == ((D4, "10"), (1, "USD"))
    assert sums["sales"][0] == ((D4, "10"), ("USD", 1, D("3.00")))
    assert sums["meta"][0] == ((D4, "10"), ("USD", 1, D("2.00")))


def test_every_stream_comes_sorted_by_day_then_group_id_as_bytes(engine: sa.Engine) -> None:
    """The merge walks the four streams in step: each must be in (day, id) order by bytes, whatever
    order the rows were written in and however the database groups them."""
    _write_ids(engine)
    _assert_in_byte_order(engine)


@pytest.mark.postgres
def test_the_streams_keep_byte_order_where_the_database_collates_ids_otherwise(postgres_url: str) -> None:
    """A database created with a linguistic collation (en_US.UTF-8 is common) sorts "b6" before "B7";
    Python, and so the merge, the other way round. The queries order ids by their bytes anyway."""
    from metaspend_pipeline.storage import db

    engine = db.engine_for(postgres_url)
    with engine.begin() as conn:
        for table in ("lead", "meta_spend_daily", "meta_conversions_daily"):
            conn.exec_driver_sql(f'ALTER TABLE {table} ALTER COLUMN campaign_id TYPE text COLLATE "en-x-icu"')
        assert conn.exec_driver_sql("SELECT 'b6' < 'B7' COLLATE \"en-x-icu\"").scalar_one()
    _write_ids(engine)
    _assert_in_byte_order(engine)


def test_a_shared_ad_account_does_not_count_a_lead_twice(engine: sa.Engine) -> None:
    """Two organizations connect the same ad account (an agency and its client): each has its own
    object map row for campaign 11. A lead of acme is tied through acme's row only, once."""
    with engine.begin() as conn:
        for org in ("acme", "agency"):
            _organization(conn, org, {"act_k": ("USD", "Pacific/Kiritimati")})
            conn.execute(
                meta_spend_daily.insert(),
                [spend(D4, "CAMPAIGN", "act_k", "11", None, None, "10.00", organization=org)],
            )
        # 10:30 UTC on the 3rd is 00:30 on the 4th in Kiritimati (UTC+14): the map gives the zone
        _leads(conn, "acme", [("K1", at(D3, 10, 30), "11")])
        _sales(conn, "acme", [("S1", "K1", "7.00", "USD")])
        objects = conn.execute(
            sa.select(meta_object_account.c.organization_id).where(meta_object_account.c.object_id == "11")
        ).scalars()
        assert sorted(objects) == ["acme", "agency"]  # written by the spend rows' trigger
    sums = _sums(engine)
    assert sums["leads"] == [((D4, "11"), (1, "USD"))]
    assert sums["sales"] == [((D4, "11"), ("USD", 1, D("7.00")))]


def test_a_sale_of_another_organization_never_counts(engine: sa.Engine) -> None:
    """Lead ids are the CRM's; a sale row of another organization that names acme's lead is not
    acme's sale."""
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_1": ("USD", "UTC")})
        _leads(conn, "acme", [("L1", at(D4, 12), "11")])
        _sales(conn, "acme", [("S1", "L1", "7.00", "USD")])
        _sales(conn, "other", [("S2", "L1", "500.00", "USD")])
    assert _sums(engine)["sales"] == [((D4, "11"), ("USD", 1, D("7.00")))]


def test_a_lead_without_a_group_id_counts_in_no_group(engine: sa.Engine) -> None:
    """A lead that came without a campaign may carry an empty string instead of NULL: it belongs to
    no group either way, and neither do its sales."""
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_1": ("USD", "UTC")})
        _leads(conn, "acme", [("L1", at(D4, 12), "11"), ("L2", at(D4, 13), ""), ("L3", at(D4, 14), None)])
        _sales(conn, "acme", [("S1", "L1", "7.00", "USD"), ("S2", "L2", "8.00", "USD"), ("S3", "L3", "9.00", "USD")])
    sums = _sums(engine)
    assert sums["leads"] == [((D4, "11"), (1, None))]  # campaign 11 never spent: no ad account, no currency
    assert sums["sales"] == [((D4, "11"), ("USD", 1, D("7.00")))]


def test_meta_purchases_prefer_omni_purchase_then_purchase_then_the_pixels(engine: sa.Engine) -> None:
    """The same purchases are listed under each type Meta sends, omni_purchase being its total over
    channels: the first present of omni_purchase, purchase and the pixel's is read, whatever order
    they were written in, and never their sum. Here each type carries other numbers, so the one read
    shows."""
    pixel = "offsite_conversion.fb_pixel_purchase"
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_1": ("USD", "UTC")})
        conn.execute(
            meta_conversions_daily.insert(),
            [
                # campaign 1: all three, written narrowest first
                _conversion("acme", D4, "1", pixel, 1, "10.00"),
                _conversion("acme", D4, "1", "purchase", 2, "25.00"),
                _conversion("acme", D4, "1", "omni_purchase", 3, "40.00"),
                # campaign 2: no omni_purchase
                _conversion("acme", D4, "2", pixel, 4, "11.00"),
                _conversion("acme", D4, "2", "purchase", 5, "12.00"),
                # campaign 3: the pixel's alone, and an action that is no purchase
                _conversion("acme", D4, "3", "lead", 9, None),
                _conversion("acme", D4, "3", pixel, 6, "13.00"),
            ],
        )
    assert _sums(engine)["meta"] == [
        ((D4, "1"), ("USD", 3, D("40.00"))),
        ((D4, "2"), ("USD", 5, D("12.00"))),
        ((D4, "3"), ("USD", 6, D("13.00"))),
    ]


@pytest.mark.postgres
def test_the_lead_window_does_not_depend_on_the_sessions_time_zone(postgres_url: str) -> None:
    """The leads read around [since, until] are bounded by UTC instants: a session whose time zone
    is Kiritimati (UTC+14) or UTC-12 reads the same leads on the window's edges."""
    from metaspend_pipeline.storage import db

    engine = db.engine_for(postgres_url)
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_k": ("USD", "Pacific/Kiritimati"), "act_m": ("USD", "Etc/GMT+12")})
        conn.execute(
            meta_spend_daily.insert(),
            [
                spend(D4, "CAMPAIGN", "act_k", "11", None, None, "1.00"),
                spend(D5, "CAMPAIGN", "act_m", "22", None, None, "1.00"),
            ],
        )
        # 00:00 on the 4th in Kiritimati; 23:59 on the 5th at UTC-12
        _leads(conn, "acme", [("K1", at(D3, 10), "11"), ("M1", at(D5 + dt.timedelta(days=1), 11, 59), "22")])
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        with engine.begin() as conn:
            conn.execute(sa.text(f"SET LOCAL TIME ZONE '{zone}'"))
            sums = roas_store.group_sums(conn, "acme", "campaign", D4, D5, None)
            assert list(sums.leads) == [((D4, "11"), (1, "USD")), ((D5, "22"), (1, "USD"))], zone


@pytest.mark.postgres
def test_the_sums_are_read_through_a_server_side_cursor(postgres_url: str) -> None:
    """The streams are read in batches from a server-side cursor, so that memory does not grow with
    an organization's rows: the cursor is open while the first rows are consumed."""
    from metaspend_pipeline.storage import db

    engine = db.engine_for(postgres_url)
    with engine.begin() as conn:
        _organization(conn, "acme", {"act_1": ("USD", "UTC")})
        conn.execute(meta_spend_daily.insert(), [spend(D4, "CAMPAIGN", "act_1", "11", None, None, "1.00")])
    with engine.begin() as conn:
        sums = roas_store.group_sums(conn, "acme", "campaign", D4, D5, None)
        assert next(sums.spend) == ((D4, "11"), ("USD", D("1.00")))
        assert conn.execute(sa.text("SELECT count(*) FROM pg_cursors")).scalar_one() == 1
