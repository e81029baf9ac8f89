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

UTC = dt.UTC
D3, D4, D5 = dt.date(2026, 10, 3), dt.date(2026, 10, 4), dt.date(2026, 10, 5)
NOW = dt.datetime(2026, 11, 1, tzinfo=UTC)
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
) -> dict[str, object]:
    return {
        "organization_id": "acme",
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
    """acme: act_1 in USD on Los Angeles time (UTC-7 in October), act_2 in EUR on Berlin time (UTC+2).

    campaign 101 (act_1): spend 100.00 on the 4th (ads 201: 60.00, 202: 40.00), 50.00 on the 5th (ad 201)
    campaign 102 (act_1): spend 30.00 on the 4th, no leads
    campaign 103 (act_2): no spend in the range (1.00 on 1 Sep ties it to act_2), leads only
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
        spend(dt.date(2026, 9, 1), "CAMPAIGN", "act_2", "103", None, None, "1.00", "EUR"),
        spend(D4, "CAMPAIGN", "act_1", "104", None, None, "100.00"),
        spend(D5, "CAMPAIGN", "act_1", "104", None, None, "300.00"),
    ]
    leads = [
        ("L1", at(D5, 3), "101", "301", "201"),  # 20:00 on the 4th in Los Angeles
        ("L2", at(D4, 18), "101", "301", "202"),
        ("L3", at(D5, 20), "101", "301", "201"),
        ("L4", at(D4, 5), "101", "301", "201"),  # 22:00 on the 3rd in Los Angeles: outside the range
        ("L5", at(D4, 23, 30), "103", None, None),  # 01:30 on the 5th in Berlin
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
    with db.engine_for(url).begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca1",
                organization_id="acme",
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=["act_1", "act_2"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            meta_ad_account.insert(),
            [
                {
                    "ad_account_id": "act_1",
                    "name": "US",
                    "currency": "USD",
                    "timezone_name": "America/Los_Angeles",
                    "timezone_offset_hours_utc": D("-8"),
                    "updated_at": NOW,
                },
                {
                    "ad_account_id": "act_2",
                    "name": "EU",
                    "currency": "EUR",
                    "timezone_name": "Europe/Berlin",
                    "timezone_offset_hours_utc": D("1"),
                    "updated_at": NOW,
                },
            ],
        )
        conn.execute(meta_spend_daily.insert(), rows)
        # the ECB's rates of the days, for the reporting-currency columns (acme reports in USD)
        conn.execute(
            fx_rates_daily.insert(),
            [
                {"date": d, "currency": c, "rate": D(r), "ecb_date": d, "fetched_at": NOW}
                for d in (D4, D5)
                for c, r in (("EUR", "1"), ("USD", "1.0850"))
            ],
        )
        conn.execute(
            lead.insert(),
            [
                {"id": i, "organization_id": "acme", "created_at": c, "campaign_id": cp, "adset_id": s, "ad_id": a}
                for i, c, cp, s, a in leads
            ],
        )
        conn.execute(
            sale.insert(),
            [
                {
                    "id": i,
                    "organization_id": "acme",
                    "lead_id": lid,
                    "amount": D(amount),
                    "currency": cur,
                    "closed_at": NOW,
                }
                for i, lid, amount, cur in sales
            ],
        )
    result = Pipeline(url, None, "http://127.0.0.1:9").run(  # type: ignore[arg-type]
        "2026-10-04",
        "2026-10-05",
        asset_selection=[dg.AssetKey(f"meta_roas_by_{g}") for g in ("campaign", "adset", "ad")],
    )
    assert result.success
    return url


def table(url: str, t: sa.Table, group: str) -> dict[tuple[dt.date, str], tuple]:
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
            for r in conn.execute(sa.select(t).where(t.c.organization_id == "acme"))
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
    output = report("--group-by", "campaign", "--from", "2026-10-04", "--to", "2026-10-05")
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
    output = report("--group-by", "campaign", "--from", "2026-10-04", "--to", "2026-10-04")
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
    csv_text = report("--group-by", "ad", "--from", "2026-10-04", "--to", "2026-10-04", "--format", "csv")
    assert csv_text.splitlines()[0].startswith("adId,adName,adsetId,adsetName,campaignId,campaignName,leadsCount")
    assert "201,,,,,,1,1,300.00,60.00,300.00,1.0,5.0,,,,USD,false" in csv_text
    table_text = report("--group-by", "adset", "--from", "2026-10-04", "--to", "2026-10-05", "--format", "table")
    assert "mixed currencies" in table_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "nobody", "--from", "2026-10-01", "--to", "2026-10-02"], "organization nobody has no connected"),
        (["--org", "acme", "--from", "2026-10-05", "--to", "2026-10-01"], "--from 2026-10-05 is after --to"),
        (["--org", "acme", "--from", "10/01/2026", "--to", "2026-10-01"], "--from '10/01/2026' is not a date"),
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
