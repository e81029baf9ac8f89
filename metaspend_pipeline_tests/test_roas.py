"""ROAS on a hand-computed example: time zones, sales on their lead's day, NULL rules, currencies,
and `metaspend roas` summing before dividing."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline import roas
from metaspend_pipeline.cli import cli
from metaspend_pipeline.roas import ratios
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import (
    connected_account,
    fx_rates_daily,
    lead,
    meta_ad_account,
    meta_roas_by_ad,
    meta_roas_by_campaign,
    meta_spend_daily,
    sale,
)
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day, iso

UTC = dt.UTC
# Days relative to today (Dagster's partitions end yesterday). No expected value depends on summer
# or winter time: every lead's local day below is the same at either offset of its zone.
D3, D4, D5 = day(3), day(4), day(5)
NOW = dt.datetime.combine(day(31), dt.time(), UTC)
D = Decimal


def spend(
    day: dt.date,
    level: str,
    account: str,
    campaign: str,
    adset: str | None,
    ad: str | None,
    amount: str,
    currency: str = "USD",
    organization: str = "acme",
) -> dict[str, object]:
    return {
        "organization_id": organization,
        "provider": "FACEBOOK",
        "date": day,
        "level": level,
        "ad_account_id": account,
        "campaign_id": campaign,
        "adset_id": adset,
        "ad_id": ad,
        "currency": currency,
        "spend": D(amount),
        "impressions": 100,
        "clicks": 3,
        "created_at": NOW,
        "updated_at": NOW,
    }


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), UTC)


@pytest.fixture
def example(env: dict[str, str]) -> str:
    """acme: act_1 in USD on Los Angeles time (UTC-7 or -8), act_2 in EUR on Berlin time (UTC+1 or +2).

    campaign 101 (act_1): spend 100.00 on the 4th (ads 201: 60.00, 202: 40.00), 50.00 on the 5th (ad 201)
    campaign 102 (act_1): spend 30.00 on the 4th, no leads
    campaign 103 (act_2): no spend in the range (1.00 on a day a month before ties it to act_2), leads only
    campaign 104 (act_1): spend 100.00 on the 4th and 300.00 on the 5th, revenue 100.00 and 900.00
    """
    url = env["METASPEND_DATABASE_URL"]
    rows = [
        spend(D4, "CAMPAIGN", "act_1", "101", None, None, "100.00"),
        spend(D4, "ADSET", "act_1", "101", "301", None, "100.00"),
        spend(D4, "AD", "act_1", "101", "301", "201", "60.00"),
        spend(D4, "AD", "act_1", "101", "301", "202", "40.00"),
        spend(D5, "CAMPAIGN", "act_1", "101", None, None, "50.00"),
        spend(D5, "ADSET", "act_1", "101", "301", None, "50.00"),
        spend(D5, "AD", "act_1", "101", "301", "201", "50.00"),
        spend(D4, "CAMPAIGN", "act_1", "102", None, None, "30.00"),
        spend(D4 - dt.timedelta(days=33), "CAMPAIGN", "act_2", "103", None, None, "1.00", "EUR"),
        spend(D4, "CAMPAIGN", "act_1", "104", None, None, "100.00"),
        spend(D5, "CAMPAIGN", "act_1", "104", None, None, "300.00"),
    ]
    leads = [
        ("L1", at(D5, 3), "101", "301", "201"),  # 19:00 or 20:00 on the 4th in Los Angeles
        ("L2", at(D4, 18), "101", "301", "202"),
        ("L3", at(D5, 20), "101", "301", "201"),
        ("L4", at(D4, 5), "101", "301", "201"),  # 21:00 or 22:00 on the 3rd in Los Angeles: outside the range
        ("L5", at(D4, 23, 30), "103", None, None),  # 00:30 or 01:30 on the 5th in Berlin
        ("L6", at(D4, 10), "103", None, None),
        ("L7", at(D4, 19), "104", None, None),
        ("L8", at(D5, 19), "104", None, None),
        ("L9", at(D4, 16), "101", "301", None),  # no ad id: counts for the campaign and ad set only
    ]
    sales = [
        ("S1", "L1", "300.00", "USD"),
        ("S2", "L2", "150.00", "USD"),
        ("S3", "L3", "80.00", "EUR"),  # another currency than campaign 101's spend
        ("S4", "L6", "200.00", "EUR"),
        ("S5", "L7", "100.00", "USD"),
        ("S6", "L8", "900.00", "USD"),
        ("S7", "L4", "5000.00", "USD"),  # its lead is outside the range
    ]
    seed(
        url,
        "acme",
        {"act_1": ("USD", "America/Los_Angeles", "-8"), "act_2": ("EUR", "Europe/Berlin", "1")},
        rows,
        leads,
        sales,
    )
    run_roas(url, iso(4), iso(5))
    return url


def insert_rates(conn: sa.Connection) -> None:
    """The ECB's rates of D3..D5, for the reporting-currency columns (every organization here reports
    in USD); written once per database."""
    if conn.execute(sa.select(sa.func.count()).select_from(fx_rates_daily)).scalar_one():
        return
    conn.execute(
        fx_rates_daily.insert(),
        [
            {"date": d, "currency": c, "rate": D(r), "ecb_date": d, "fetched_at": NOW}
            for d in (D3, D4, D5)
            for c, r in (("EUR", "1"), ("USD", "1.0850"))
        ],
    )


def seed(
    url: str,
    organization: str,
    accounts: dict[str, tuple[str, str, str]],
    rows: list[dict[str, object]],
    leads: list[tuple[str, dt.datetime, str, str | None, str | None]],
    sales: list[tuple[str, str, str, str]],
) -> None:
    """One connected organization with its ad accounts (currency, time zone, offset), spend, leads, sales."""
    with db.engine_for(url).begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id=f"ca-{organization}",
                organization_id=organization,
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=list(accounts),
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            meta_ad_account.insert(),
            [
                {
                    "ad_account_id": account,
                    "name": account,
                    "currency": currency,
                    "timezone_name": zone,
                    "timezone_offset_hours_utc": D(offset),
                    "updated_at": NOW,
                }
                for account, (currency, zone, offset) in accounts.items()
            ],
        )
        if rows:
            conn.execute(meta_spend_daily.insert(), rows)
        insert_rates(conn)
        conn.execute(
            lead.insert(),
            [
                {
                    "id": i,
                    "organization_id": organization,
                    "created_at": c,
                    "campaign_id": cp,
                    "adset_id": s,
                    "ad_id": a,
                }
                for i, c, cp, s, a in leads
            ],
        )
        if sales:
            conn.execute(
                sale.insert(),
                [
                    {
                        "id": i,
                        "organization_id": organization,
                        "lead_id": lid,
                        "amount": D(amount),
                        "currency": cur,
                        "closed_at": NOW,
                    }
                    for i, lid, amount, cur in sales
                ],
            )


def run_roas(url: str, start: str, end: str) -> None:
    result = Pipeline(url, None, "http://127.0.0.1:9").run(  # type: ignore[arg-type]
        start, end, asset_selection=[dg.AssetKey(f"meta_roas_by_{g}") for g in ("campaign", "adset", "ad")]
    )
    assert result.success


def table(url: str, t: sa.Table, group: str, organization: str = "acme") -> dict[tuple[dt.date, str], tuple]:
    with db.engine_for(url).connect() as conn:
        return {
            (r.date, r._mapping[f"{group}_id"]): (
                r.currency,
                r.leads_count,
                r.sales_count,
                r.revenue,
                r.spend,
                r.avg_ticket,
                r.conversion_rate,
                r.roas,
                r.revenue_currency_mismatch,
            )
            for r in conn.execute(sa.select(t).where(t.c.organization_id == organization))
        }


def test_daily_roas_by_campaign(example: str) -> None:
    assert table(example, meta_roas_by_campaign, "campaign") == {
        # L1 (its day in Los Angeles) and L2, both sold; L9 has no ad but is the campaign's lead
        (D4, "101"): ("USD", 3, 2, D("450.00"), D("100.00"), D("225.00"), D("0.666667"), D("4.500000"), False),
        # S3 is in EUR: not mixed into USD revenue
        (D5, "101"): ("USD", 1, 1, None, D("50.00"), None, D("1.000000"), None, True),
        # spend but no leads: present, ratios NULL, revenue 0 -> roas NULL
        (D4, "102"): ("USD", 0, 0, D("0.00"), D("30.00"), None, None, None, False),
        # leads but no spend, currency from the ad account (EUR), days in Berlin time
        (D4, "103"): ("EUR", 1, 1, D("200.00"), D("0.00"), D("200.00"), D("1.000000"), None, False),
        (D5, "103"): ("EUR", 1, 0, D("0.00"), D("0.00"), None, D("0.000000"), None, False),
        (D4, "104"): ("USD", 1, 1, D("100.00"), D("100.00"), D("100.00"), D("1.000000"), D("1.000000"), False),
        (D5, "104"): ("USD", 1, 1, D("900.00"), D("300.00"), D("900.00"), D("1.000000"), D("3.000000"), False),
    }


def test_daily_roas_by_ad_uses_ad_spend_only(example: str) -> None:
    assert table(example, meta_roas_by_ad, "ad") == {
        (D4, "201"): ("USD", 1, 1, D("300.00"), D("60.00"), D("300.00"), D("1.000000"), D("5.000000"), False),
        (D4, "202"): ("USD", 1, 1, D("150.00"), D("40.00"), D("150.00"), D("1.000000"), D("3.750000"), False),
        (D5, "201"): ("USD", 1, 1, None, D("50.00"), None, D("1.000000"), None, True),
    }


def report(*args: str) -> object:
    result = CliRunner().invoke(cli, ["roas", "--org", "acme", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_report_sums_before_dividing(example: str) -> None:
    output = report("--group-by", "campaign", "--from", iso(4), "--to", iso(5))
    items = {i["campaignId"]: i for i in json.loads(output, parse_float=Decimal)}
    # campaign 104: daily ROAS 1.0 and 3.0 average to 2.0; the right answer is 1000 / 400 = 2.5
    assert items["104"] == {
        "campaignId": "104",
        "campaignName": None,  # no meta_campaign row: names are tested in test_objects.py
        "leadsCount": 2,
        "salesCount": 2,
        "revenue": D("1000.00"),
        "spend": D("400.00"),
        "avgTicket": D("500.00"),
        "conversionRate": D("1.0"),
        "roas": D("2.5"),
        "metaPurchases": None,  # Meta's view: tested in test_conversions.py
        "metaPurchaseValue": None,
        "metaRoas": None,
        "currency": "USD",
        "revenueCurrencyMismatch": False,
    }
    assert items["101"]["revenue"] is None and items["101"]["roas"] is None and items["101"]["revenueCurrencyMismatch"]
    assert (items["102"]["revenue"], items["102"]["roas"], items["102"]["conversionRate"]) == (D("0.00"), None, None)
    assert (items["103"]["leadsCount"], items["103"]["conversionRate"], items["103"]["roas"]) == (2, D("0.5"), None)
    assert list(items) == ["104", "101", "102", "103"]  # by spend, largest first
    assert '"revenue": 1000.00' in output  # numbers, with cents, never passed through float


def test_report_in_the_dashboard_shape_and_other_formats(example: str) -> None:
    output = report("--group-by", "campaign", "--from", iso(4), "--to", iso(4))
    first = json.loads(output, parse_float=Decimal)[0]
    assert first == {
        "campaignId": "101",
        "campaignName": None,
        "leadsCount": 3,
        "salesCount": 2,
        "revenue": D("450.00"),
        "spend": D("100.00"),
        "avgTicket": D("225.00"),
        "conversionRate": D("0.666667"),
        "roas": D("4.5"),
        "metaPurchases": None,
        "metaPurchaseValue": None,
        "metaRoas": None,
        "currency": "USD",
        "revenueCurrencyMismatch": False,
    }
    csv_text = report("--group-by", "ad", "--from", iso(4), "--to", iso(4), "--format", "csv")
    assert csv_text.splitlines()[0].startswith("adId,adName,adsetId,adsetName,campaignId,campaignName,leadsCount")
    assert "201,,,,,,1,1,300.00,60.00,300.00,1.0,5.0,,,,USD,false" in csv_text
    table_text = report("--group-by", "adset", "--from", iso(4), "--to", iso(5), "--format", "table")
    assert "mixed currencies" in table_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nobody", "--from", iso(1), "--to", iso(2)], "organization nobody has no connected"),
        (["--org", "acme", "--from", iso(5), "--to", iso(1)], f"--from {iso(5)} is after --to"),
        (["--org", "acme", "--from", "10/01/2026", "--to", iso(1)], "--from '10/01/2026' is not a date"),
    ],
)
def test_report_bad_input(example: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["roas", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_ratio_rules() -> None:
    assert ratios(0, 0, D(0), D(0)) == ratios(0, 0, D(0), D("10"))
    r = ratios(4, 1, D("99.99"), D("33.33"))
    assert (r.conversion_rate, r.avg_ticket, r.roas) == (D("0.250000"), D("99.99"), D("3.000000"))
    assert ratios(3, 0, D(0), D("5")).roas is None  # no revenue
    assert ratios(3, 1, D("5"), D(0)).roas is None  # no spend
    assert ratios(3, 1, None, D("5")).avg_ticket is None  # mismatched currencies


def test_ratio_ties_round_half_up() -> None:
    """Values exactly halfway: half up, where half-even or half-down would round the other way."""
    r = ratios(256, 2, D("100.01"), D("12801.28"))
    # 2 / 256 = 0.0078125 -> 0.007813; 100.01 / 2 = 50.005 -> 50.01; 100.01 / 12801.28 = 0.0078125 -> 0.007813
    assert (r.conversion_rate, r.avg_ticket, r.roas) == (D("0.007813"), D("50.01"), D("0.007813"))
    r = ratios(128, 2, D("0.05"), D("6.40"))
    # 2 / 128 = 0.015625 (exact); 0.05 / 2 = 0.025 -> 0.03; 0.05 / 6.40 = 0.0078125 -> 0.007813
    assert (r.conversion_rate, r.avg_ticket, r.roas) == (D("0.015625"), D("0.03"), D("0.007813"))


# The farthest time zones: Kiritimati is UTC+14, Etc/GMT+12 is UTC-12 (POSIX signs are reversed).
FAR_ZONES = {"act_k": ("USD", "Pacific/Kiritimati", "14"), "act_w": ("USD", "Etc/GMT+12", "-12")}


@pytest.mark.parametrize("window_days", ["1", "92"])
def test_leads_in_the_margin_days_of_the_lead_window_count(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, window_days: str
) -> None:
    """A lead counts on its local day even when that day starts 14 hours before UTC's (UTC+14) or
    ends 12 hours after it (UTC-12): the leads read for [since, until] span the UTC days around it.

    Range D4..D5. k (UTC+14): K1 at D3 10:30 UTC is 00:30 on D4, counted; K0 at D3 09:30 UTC is
    23:30 on D3, not. w (UTC-12): W1 at D6 11:30 UTC is 23:30 on D5, counted; W2 at D6 12:30 UTC is
    00:30 on D6, not. With windows of one day each window has these margins too.
    """
    monkeypatch.setenv("META_FETCH_WINDOW_DAYS", window_days)
    url = env["METASPEND_DATABASE_URL"]
    seed(
        url,
        "edge",
        FAR_ZONES,
        [
            spend(D4, "CAMPAIGN", "act_k", "k1", None, None, "10.00", organization="edge"),
            spend(D5, "CAMPAIGN", "act_w", "w1", None, None, "10.00", organization="edge"),
        ],
        [
            ("K1", at(D3, 10, 30), "k1", None, None),
            ("K0", at(D3, 9, 30), "k1", None, None),
            ("W1", at(D5 + dt.timedelta(days=1), 11, 30), "w1", None, None),
            ("W2", at(D5 + dt.timedelta(days=1), 12, 30), "w1", None, None),
        ],
        [
            ("SK1", "K1", "40.00", "USD"),
            ("SW1", "W1", "60.00", "USD"),
            ("SK0", "K0", "999.00", "USD"),
            ("SW2", "W2", "999.00", "USD"),
        ],
    )
    run_roas(url, iso(4), iso(5))
    assert table(url, meta_roas_by_campaign, "campaign", "edge") == {
        (D4, "k1"): ("USD", 1, 1, D("40.00"), D("10.00"), D("40.00"), D("1.000000"), D("4.000000"), False),
        (D5, "w1"): ("USD", 1, 1, D("60.00"), D("10.00"), D("60.00"), D("1.000000"), D("6.000000"), False),
    }


def test_the_only_ad_account_gives_its_time_zone_to_leads_of_unknown_campaigns(env: dict[str, str]) -> None:
    """A lead whose campaign Meta never reported has no ad account of its own. With one ad account
    in the organization it takes that account's zone; with two the pipeline cannot know, and the
    lead counts on its UTC day.

    Lead at D4 11:00 UTC: 01:00 on D5 in Kiritimati (UTC+14), 23:00 on D3 at UTC-12, D4 in UTC.
    """
    url = env["METASPEND_DATABASE_URL"]
    seed(url, "solo", {"act_s": ("USD", "Pacific/Kiritimati", "14")}, [], [("LS", at(D4, 11), "new", None, None)], [])
    seed(url, "duo", FAR_ZONES, [], [("LD", at(D4, 11), "new", None, None)], [])
    run_roas(url, iso(3), iso(5))
    assert table(url, meta_roas_by_campaign, "campaign", "solo") == {
        (D5, "new"): ("USD", 1, 0, D("0.00"), D("0.00"), None, D("0.000000"), None, False),
    }
    assert table(url, meta_roas_by_campaign, "campaign", "duo") == {
        (D4, "new"): (None, 1, 0, D("0.00"), D("0.00"), None, D("0.000000"), None, False),
    }


# --- exact rules, without Dagster (mutation testing, docs/development.md) -----------------------------


def test_ratios_round_half_up_on_exact_ties() -> None:
    # 2/256 = 0.05/6.40 = 0.0078125 and 0.05/2 = 0.025 are ties: half up gives ...13 and 0.03 (half even: ...12, 0.02)
    r = ratios(256, 2, D("0.05"), D("6.40"))
    assert (r.conversion_rate, r.avg_ticket, r.roas) == (D("0.007813"), D("0.03"), D("0.007813"))
    r = ratios(3, 2, D("0.01"), D("3.00"))  # 0.666666.. rounds up, 0.005 is a tie, 0.00333.. rounds down
    assert (r.conversion_rate, r.avg_ticket, r.roas) == (D("0.666667"), D("0.01"), D("0.003333"))


def test_roas_only_from_revenue_and_spend_both_above_zero() -> None:
    assert ratios(1, 1, D("-5.00"), D("10.00")).roas is None  # a refund: no negative ROAS
    assert ratios(1, 1, D("0.00"), D("10.00")).roas is None
    assert ratios(1, 1, D("5.00"), D("0.00")).roas is None
    assert ratios(1, 1, None, D("10.00")) == roas.Ratios(avg_ticket=None, conversion_rate=D("1.000000"), roas=None)
    assert ratios(0, 0, D("0.00"), D("1.00")) == roas.Ratios(None, None, None)
    assert ratios(0, 1, D("7.00"), D("1.00")) == roas.Ratios(D("7.00"), None, D("7.000000"))


def totals(**kw: object) -> roas.GroupTotals:
    t = roas.GroupTotals()
    for name, value in kw.items():
        setattr(t, name, value)
    return t


def test_a_groups_currency_and_revenue() -> None:
    def revenue(**by: str) -> dict[str, Decimal]:
        return {c: D(v) for c, v in by.items()}

    assert totals(spend_currencies={"USD"}, revenue=revenue(USD="10.5")).finish() == ("USD", D("10.50"), False)
    assert totals(spend_currencies={"USD"}, fallback_currency="EUR").finish() == ("USD", D("0.00"), False)
    assert totals(fallback_currency="EUR", revenue=revenue(EUR="5")).finish() == ("EUR", D("5.00"), False)
    assert totals(revenue=revenue(GBP="3")).finish() == ("GBP", D("3.00"), False)  # sales alone decide
    assert totals(revenue=revenue(GBP="3", USD="4")).finish() == (None, None, True)
    assert totals().finish() == (None, D(0), False)
    assert totals(spend_currencies={"USD", "EUR"}, revenue=revenue(USD="1")).finish() == (None, None, True)
    assert totals(spend_currencies={"USD"}, revenue=revenue(USD="1", EUR="2")).finish() == ("USD", None, True)
    assert totals(spend_currencies={"USD"}, revenue=revenue(EUR="2")).finish() == ("USD", None, True)


def test_merge_sums_makes_one_row_per_day_and_group_from_four_sorted_streams() -> None:
    from metaspend_pipeline.storage.roas import GroupSums, RoasRow

    sums = GroupSums(
        spend=iter(
            [((D4, "1"), ("USD", D("10.00"))), ((D4, "1"), ("USD", D("5.00"))), ((D5, "2"), ("EUR", D("3.00")))]
        ),
        leads=iter([((D3, "9"), (2, None)), ((D4, "1"), (3, "USD")), ((D5, "3"), (1, None)), ((D5, "3"), (1, "GBP"))]),
        sales=iter([((D4, "1"), ("USD", 2, D("45.00"))), ((D5, "3"), ("GBP", 1, D("0.05")))]),
        meta_purchases=iter([((D4, "1"), ("USD", 3, D("60.00")))]),
    )
    assert list(roas.merge_sums("acme", sums)) == [
        RoasRow("acme", D3, "9", None, 2, 0, D(0), D("0.00"), None, D("0.000000"), None, False),
        RoasRow(
            "acme",
            D4,
            "1",
            "USD",
            3,
            2,
            D("45.00"),
            D("15.00"),
            D("22.50"),
            D("0.666667"),
            D("3.000000"),
            False,
            meta_purchases=3,
            meta_purchase_value=D("60.00"),
            meta_roas=D("4.000000"),
        ),
        RoasRow("acme", D5, "2", "EUR", 0, 0, D("0.00"), D("3.00"), None, None, None, False),
        RoasRow("acme", D5, "3", "GBP", 2, 1, D("0.05"), D("0.00"), D("0.05"), D("0.500000"), None, False),
    ]


def _margin_example(engine: sa.Engine) -> None:
    """acme: act_k on Kiritimati time (UTC+14) ties campaign 11, act_m on UTC-12 ties campaign 22;
    campaign 99 is tied to no ad account. solo: act_k only; its campaign 77 is tied to none."""
    with engine.begin() as conn:
        conn.execute(
            connected_account.insert(),
            [
                {"id": "ca-acme", "organization_id": "acme", "provider": "FACEBOOK", "status": "CONNECTED",
                 "ad_accounts": ["act_k", "act_m"], "created_at": NOW, "updated_at": NOW},
                {"id": "ca-solo", "organization_id": "solo", "provider": "FACEBOOK", "status": "CONNECTED",
                 "ad_accounts": ["act_k"], "created_at": NOW, "updated_at": NOW},
            ],
        )  # fmt: skip
        conn.execute(
            meta_ad_account.insert(),
            [
                {"ad_account_id": "act_k", "currency": "USD", "timezone_name": "Pacific/Kiritimati", "updated_at": NOW},
                {"ad_account_id": "act_m", "currency": "USD", "timezone_name": "Etc/GMT+12", "updated_at": NOW},
            ],
        )
        conn.execute(
            meta_spend_daily.insert(),
            [
                spend(D4, "CAMPAIGN", "act_k", "11", None, None, "10.00"),
                spend(D5, "CAMPAIGN", "act_m", "22", None, None, "20.00"),
            ],
        )
        leads = [
            ("K0", "acme", at(D3, 9, 59), "11"),  # 23:59 on the 3rd in Kiritimati: before the window
            ("K1", "acme", at(D3, 10), "11"),  # 00:00 on the 4th in Kiritimati: the window's first day
            ("M1", "acme", at(D5 + dt.timedelta(days=1), 11, 59), "22"),  # 23:59 on the 5th at UTC-12: its last day
            ("M0", "acme", at(D5 + dt.timedelta(days=1), 12), "22"),  # 00:00 on the 6th at UTC-12: after it
            ("U1", "acme", at(D5, 11, 30), "99"),  # two ad accounts, none its own: UTC, the 5th
            ("S1", "solo", at(D4, 12), "77"),  # solo's only ad account: 02:00 on the 5th in Kiritimati
        ]
        conn.execute(
            lead.insert(),
            [{"id": i, "organization_id": o, "created_at": c, "campaign_id": cp} for i, o, c, cp in leads],
        )
        conn.execute(
            sale.insert(),
            [
                {
                    "id": i,
                    "organization_id": "acme",
                    "lead_id": lid,
                    "amount": D(a),
                    "currency": "usd",
                    "closed_at": NOW,
                }
                for i, lid, a in (
                    ("S0", "K0", "999.00"),
                    ("S1", "K1", "30.00"),
                    ("S2", "M1", "50.00"),
                    ("S3", "M0", "7.00"),
                )
            ],
        )
        insert_rates(conn)


def _campaign_rows(engine: sa.Engine, org: str) -> dict[tuple[dt.date, str], tuple]:
    t = meta_roas_by_campaign
    with engine.connect() as conn:
        return {
            (r.date, r.campaign_id): (r.currency, r.leads_count, r.sales_count, r.revenue, r.spend, r.avg_ticket,
                                      r.conversion_rate, r.roas, r.revenue_currency_mismatch)
            for r in conn.execute(sa.select(t).where(t.c.organization_id == org))
        }  # fmt: skip


def test_leads_on_the_margin_days_of_the_window_count_on_their_local_day(engine: sa.Engine) -> None:
    _margin_example(engine)
    report = roas.RoasReport()
    for org in ("acme", "solo"):
        roas.refresh_organization(engine, org, D4, D5, 1, report, groups=("campaign",))
    assert report.failures == {}
    assert _campaign_rows(engine, "acme") == {
        (D4, "11"): ("USD", 1, 1, D("30.00"), D("10.00"), D("30.00"), D("1.000000"), D("3.000000"), False),
        (D5, "22"): ("USD", 1, 1, D("50.00"), D("20.00"), D("50.00"), D("1.000000"), D("2.500000"), False),
        (D5, "99"): (None, 1, 0, D("0.00"), D("0.00"), None, D("0.000000"), None, False),
    }
    assert _campaign_rows(engine, "solo") == {
        (D5, "77"): ("USD", 1, 0, D("0.00"), D("0.00"), None, D("0.000000"), None, False),
    }
    assert dict(report.rows_by_group) == {"campaign": 4}
    assert dict(report.rows_by_day_group) == {(D4, "campaign"): 1, (D5, "campaign"): 3}
    assert dict(report.mismatches_by_group) == {"campaign": 0}


def test_refresh_reports_rows_and_mismatches_per_group_and_replaces_only_its_window(engine: sa.Engine) -> None:
    _margin_example(engine)
    with engine.begin() as conn:
        conn.execute(
            sale.insert(),
            [{"id": "S4", "organization_id": "acme", "lead_id": "K1", "amount": D("1.00"), "currency": "EUR", "closed_at": NOW}],
        )  # fmt: skip
    first = roas.RoasReport()
    roas.refresh_organization(engine, "acme", D4, D5, 2, first)
    assert dict(first.rows_by_group) == {"campaign": 3}  # no lead or spend has an ad set or an ad
    assert dict(first.mismatches_by_group) == {"campaign": 1}
    assert _campaign_rows(engine, "acme")[(D4, "11")] == (
        "USD",
        1,
        2,
        None,
        D("10.00"),
        None,
        D("2.000000"),
        None,
        True,
    )
    with engine.begin() as conn:  # M1 (the 5th, campaign 22) sells again; K1's EUR sale (the 4th) is gone
        conn.execute(
            sale.insert(),
            [{"id": "S5", "organization_id": "acme", "lead_id": "M1", "amount": D("20.00"), "currency": "USD", "closed_at": NOW}],
        )  # fmt: skip
        conn.execute(sale.delete().where(sale.c.id == "S4"))
    again = roas.RoasReport()
    roas.refresh_organization(engine, "acme", D5, D5, 1, again, groups=("campaign",))  # the 4th stays
    assert again.failures == {}
    rows = _campaign_rows(engine, "acme")
    assert set(rows) == {(D4, "11"), (D5, "22"), (D5, "99")}
    assert rows[(D4, "11")][8] is True  # not recomputed
    # 50.00 + 20.00 = 70.00 from 2 sales of 1 lead, on 20.00 of spend
    assert rows[(D5, "22")] == ("USD", 1, 2, D("70.00"), D("20.00"), D("35.00"), D("2.000000"), D("3.500000"), False)
    assert dict(again.rows_by_day_group) == {(D5, "campaign"): 2}


def test_the_roas_stores_reads(engine: sa.Engine) -> None:
    from metaspend_pipeline.storage import roas as roas_store
    from metaspend_pipeline.storage.roas import RoasRow

    _margin_example(engine)
    with engine.begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca-acme-2", organization_id="acme", provider="INSTAGRAM", status="NEEDS_REAUTH",
                ad_accounts=["act_z", "act_k"], created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            meta_spend_daily.insert(),
            [{**spend(D4, "CAMPAIGN", "act_x", "55", None, None, "1.00"), "organization_id": "gone"}],
        )

        def row(org: str, day: dt.date, group_id: str, mismatch: bool) -> RoasRow:
            return RoasRow(org, day, group_id, "USD", 1, 0, None, D("1.00"), None, D("0"), None, mismatch)

        written = roas_store.replace_roas(
            conn,
            "adset",
            "acme",
            D3,
            D5,
            [row("acme", D5, "8", True), row("acme", D3, "9", False), row("acme", D4, "7", True)],
        )
        roas_store.replace_roas(conn, "adset", "solo", D4, D4, [row("solo", D4, "1", True)])
        # replaces the 5th only; two ad sets of one day, written out of order
        roas_store.replace_roas(
            conn, "adset", "acme", D5, D5, [row("acme", D5, "6", False), row("acme", D5, "5", True)]
        )
    assert written == 3
    with engine.connect() as conn:
        assert roas_store.organization_ad_accounts(conn, "acme") == {"act_k", "act_m", "act_z"}
        assert roas_store.organization_ad_accounts(conn, "nobody") == set()
        assert roas_store.roas_organizations(conn) == ["acme", "gone", "solo"]
        read = [
            (r.organization_id, r.date, r.adset_id, r.revenue_currency_mismatch)
            for r in roas_store.iter_roas(conn, "adset", D3, D5)
        ]
        assert read == [
            ("acme", D3, "9", False),
            ("acme", D4, "7", True),
            ("acme", D5, "5", True),
            ("acme", D5, "6", False),
            ("solo", D4, "1", True),
        ]
        assert [r.adset_id for r in roas_store.iter_roas(conn, "adset", D4, D4, ["acme"])] == ["7"]
        assert [r.adset_id for r in roas_store.iter_roas(conn, "adset", D3, D5, only_mismatches=True)] == [
            "7",
            "5",
            "1",
        ]
        assert list(roas_store.iter_roas(conn, "adset", D3, D5, [])) == []
