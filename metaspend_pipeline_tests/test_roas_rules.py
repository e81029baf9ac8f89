"""ROAS rules below the asset: the merge of the sums with Meta's view and the reporting currency,
and what a failing organization leaves in the report and the log."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline import roas
from metaspend_pipeline.report import roas_report, to_json
from metaspend_pipeline.storage.roas import GroupSums, RoasRow
from metaspend_pipeline.storage.schema import (
    connected_account,
    fx_rates_daily,
    lead,
    meta_ad_account,
    meta_roas_by_campaign,
    meta_spend_daily,
    organization_setting,
    sale,
)
from metaspend_pipeline_tests.test_roas import D4, NOW, at, insert_rates, spend

D = Decimal
# the ECB's rates of D4 as units per euro (insert_rates writes the same)
RATES = {(D4, "EUR"): D("1"), (D4, "USD"): D("1.0850")}


def sums(**streams: list) -> GroupSums:
    return GroupSums(
        spend=iter(streams.get("spend", [])),
        leads=iter(streams.get("leads", [])),
        sales=iter(streams.get("sales", [])),
        meta_purchases=iter(streams.get("meta", [])),
    )


def test_a_revenue_below_one_unit_still_has_a_roas() -> None:
    """Only a revenue or spend of 0 or less has no ROAS: 0.50 of revenue on 2.00 of spend is 0.25,
    and a cent on a cent is 1 (revenue / spend, worked out by hand)."""
    assert roas.roas_of(Decimal("0.50"), Decimal("2.00")) == Decimal("0.25")
    assert roas.roas_of(Decimal("0.01"), Decimal("0.01")) == Decimal("1")
    assert roas.roas_of(Decimal("0.00"), Decimal("2.00")) is None
    assert roas.roas_of(Decimal("0.50"), Decimal("0.00")) is None


def test_the_reporting_columns_add_every_entry_of_a_currency_then_convert_it() -> None:
    """Spend 10.00 + 5.00 USD; sales 1.00 + 2.00 EUR in a USD group (a mismatch, so no revenue in
    USD), reported in USD: spend 15.00; revenue 3.00 EUR * 1.0850 = 3.255 -> 3.26; roas 3.26 / 15.00
    = 0.217333."""
    rows = roas.merge_sums(
        "acme",
        sums(
            spend=[((D4, "1"), ("USD", D("10.00"))), ((D4, "1"), ("USD", D("5.00")))],
            sales=[((D4, "1"), ("EUR", 1, D("1.00"))), ((D4, "1"), ("EUR", 1, D("2.00")))],
        ),
        roas.Conversion("acme", "USD", RATES),
    )
    (row,) = rows
    assert (row.currency, row.revenue, row.spend, row.sales_count, row.revenue_currency_mismatch) == (
        "USD",
        None,
        D("15.00"),
        2,
        True,
    )
    assert (row.reporting_currency, row.spend_reporting, row.revenue_reporting, row.roas_reporting) == (
        "USD",
        D("15.00"),
        D("3.26"),
        D("0.217333"),
    )


def test_a_group_with_only_metas_purchases_takes_their_currency() -> None:
    """No spend, no lead, no sale in the CRM: Meta's purchases alone give the group its currency, so
    their value is kept (and no ROAS without spend)."""
    # two entries of one currency add up: 2 + 1 purchases, 30.00 + 5.00
    (row,) = roas.merge_sums(
        "acme", sums(meta=[((D4, "7"), ("EUR", 2, D("30.00"))), ((D4, "7"), ("EUR", 1, D("5.00")))])
    )
    assert row == RoasRow(
        "acme", D4, "7", "EUR", 0, 0, D("0.00"), D("0.00"), None, None, None, False,
        meta_purchases=3, meta_purchase_value=D("35.00"), meta_roas=None,
    )  # fmt: skip


def test_metas_count_or_value_alone_is_kept_and_values_in_two_currencies_are_not_added() -> None:
    """Meta may send purchases without their value, or a value without the count (`actions`
    missing): what was sent stands, with its ROAS where there is a value. Values in two currencies
    cannot be added: NULL, as for the CRM's revenue."""
    rows = list(
        roas.merge_sums(
            "acme",
            sums(
                spend=[((D4, "8"), ("USD", D("4.00"))), ((D4, "9"), ("USD", D("7.00")))],
                meta=[
                    ((D4, "7"), ("USD", 3, None)),
                    ((D4, "8"), ("USD", None, D("12.00"))),
                    ((D4, "9"), ("EUR", 1, D("5.00"))),
                    ((D4, "9"), ("USD", 1, D("7.00"))),
                ],
            ),
        )
    )
    # 12.00 / 4.00 = 3
    assert [(r.group_id, r.meta_purchases, r.meta_purchase_value, r.meta_roas) for r in rows] == [
        ("7", 3, None, None),
        ("8", None, D("12.00"), D("3.000000")),
        ("9", 2, None, None),
    ]


def _organization_with_a_sale(engine: sa.Engine, amount: str, currency: str, spent: str = "0.01") -> None:
    """acme: act_1 (USD, UTC) spent `spent` on campaign 1 on D4; its one lead of D4 sold for `amount`."""
    with engine.begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca-acme", organization_id="acme", provider="FACEBOOK", status="CONNECTED",
                ad_accounts=["act_1"], created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            meta_ad_account.insert().values(ad_account_id="act_1", currency="USD", timezone_name="UTC", updated_at=NOW)
        )
        conn.execute(meta_spend_daily.insert(), [spend(D4, "CAMPAIGN", "act_1", "1", None, None, spent)])
        conn.execute(lead.insert().values(id="L1", organization_id="acme", created_at=at(D4, 12), campaign_id="1"))
        conn.execute(
            sale.insert().values(
                id="S1", organization_id="acme", lead_id="L1", amount=D(amount), currency=currency, closed_at=NOW
            )
        )
        insert_rates(conn)  # EUR and USD only


def _refresh(engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> roas.RoasReport:
    report = roas.RoasReport()
    with caplog.at_level(logging.ERROR, logger="metaspend_pipeline.roas"):
        roas.refresh_organization(engine, "acme", D4, D4, 1, report, groups=("campaign",))
    return report


def test_a_value_its_column_cannot_hold_fails_the_organization_naming_the_error(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A sale typed in cents as units: 10,000,000,000.00 on 0.01 of spend is a ROAS of 10^12, past
    NUMERIC(18, 6). The organization fails with the error's type and text, logged once."""
    _organization_with_a_sale(engine, "10000000000.00", "USD")
    report = _refresh(engine, caplog)
    message = "organization acme: ValueError: 1000000000000.000000 does not fit NUMERIC(18, 6)"
    assert report.failures == {"acme": message}
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, message)]


def test_a_missing_rate_leaves_null_only_the_reporting_amounts_that_need_it(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """acme (USD, reporting in USD) has a 5.00 BRL sale and no BRL rate: its row is written with every
    account-currency column, spend_reporting needs no rate (USD to USD), revenue_reporting and
    roas_reporting are NULL; a warning names the currency, the day and what to do."""
    _organization_with_a_sale(engine, "5.00", "BRL", spent="2.00")
    report = roas.RoasReport()
    with caplog.at_level(logging.WARNING, logger="metaspend_pipeline.roas"):
        roas.refresh_organization(engine, "acme", D4, D4, 1, report, groups=("campaign",))
    assert report.failures == {}
    assert (dict(report.missing_rates), dict(report.unconverted_by_group)) == ({"acme": {(D4, "BRL")}}, {"campaign": 1})
    assert [r.getMessage() for r in caplog.records] == [
        f"organization acme: fx_rates_daily has no ECB rate of BRL on {D4}, needed to report it in USD: the "
        "reporting amounts of the rows that need one are NULL, the rest of its ROAS is written; materialize "
        "fx_rates_daily for those days, then its ROAS again"
    ]
    with engine.connect() as conn:
        row = conn.execute(sa.select(meta_roas_by_campaign)).one()
    assert (row.spend, row.leads_count, row.sales_count, row.revenue, row.revenue_currency_mismatch) == (
        D("2.00"), 1, 1, None, True,
    )  # fmt: skip
    assert (row.reporting_currency, row.spend_reporting, row.revenue_reporting, row.roas_reporting) == (
        "USD", D("2.00"), None, None,
    )  # fmt: skip


def test_rounding_follows_the_reporting_currency_s_minor_units() -> None:
    """Half up to 0 decimals in JPY, 2 in USD, 3 in KWD: 10.05 USD at 156.13 JPY per 1.0000 USD is
    1569.1065 -> 1569 JPY (not 1569.11); 0.5 JPY rounds up to 1; 1.0005 KWD stays 1.001."""
    rates = {(D4, "USD"): D("1.0000"), (D4, "JPY"): D("156.13"), (D4, "KWD"): D("0.3300")}
    yen = roas.Conversion("acme", "JPY", rates)
    assert yen.convert(D("10.05"), "USD", D4) == D("1569")
    assert yen.convert(D("10.05"), "USD", D4).as_tuple().exponent == 0
    assert yen.convert(D("1569.50"), "JPY", D4) == D("1570")  # already in JPY: only rounded, half up
    assert roas.Conversion("acme", "USD", rates).convert(D("1569"), "JPY", D4) == D("10.05")
    assert roas.Conversion("acme", "KWD", rates).convert(D("1.0005"), "KWD", D4) == D("1.001")
    (row,) = roas.merge_sums(
        "acme",
        sums(spend=[((D4, "1"), ("USD", D("10.05")))], sales=[((D4, "1"), ("USD", 1, D("33.33")))]),
        yen,
    )
    # 33.33 USD is 5203.8129 -> 5204 JPY; roas 5204 / 1569 from the rounded amounts
    assert (row.spend_reporting, row.revenue_reporting, row.roas_reporting) == (D("1569"), D("5204"), D("3.316762"))


def test_an_organization_reporting_in_jpy_gets_whole_yen_stored_and_reported(engine: sa.Engine) -> None:
    """10.05 USD at 169.40 JPY and 1.0850 USD per euro is 1569.0968 JPY: stored and shown as 1569 (it was
    1569.10, cents of a currency without them); the 33.33 USD sale is 5203.7806 -> 5204 JPY. The account's
    own columns stay in USD with cents."""
    _organization_with_a_sale(engine, "33.33", "USD", spent="10.05")
    with engine.begin() as conn:
        conn.execute(
            organization_setting.insert().values(
                organization_id="acme", reporting_currency="JPY", created_at=NOW, updated_at=NOW
            )
        )
        conn.execute(
            fx_rates_daily.insert().values(date=D4, currency="JPY", rate=D("169.40"), ecb_date=D4, fetched_at=NOW)
        )
    report = roas.RoasReport()
    roas.refresh_organization(engine, "acme", D4, D4, 1, report, groups=("campaign",))
    assert report.failures == {} and not report.missing_rates["acme"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(meta_roas_by_campaign)).one()
        items = roas_report(conn, "acme", "campaign", D4, D4, currency="reporting")
        in_usd = to_json(roas_report(conn, "acme", "campaign", D4, D4))
    assert (row.reporting_currency, row.spend_reporting, row.revenue_reporting) == ("JPY", D("1569"), D("5204"))
    assert row.roas_reporting == D("3.316762")  # 5204 / 1569, from the rounded amounts
    assert '"spend": 1569, "avgTicket": 5204, ' in to_json(items) and '"revenue": 5204, ' in to_json(items)
    assert '"spend": 10.05, ' in in_usd and '"revenue": 33.33, ' in in_usd


def test_a_refresh_reports_in_the_organizations_currency_at_the_days_rates(engine: sa.Engine) -> None:
    """acme reports in EUR: 10.85 USD of spend at 1.0850 USD per euro is 10.00 EUR, the 25.00 EUR
    sale stays 25.00, so roas_reporting = 2.5; in the account's currency (USD) the EUR sale is a
    mismatch."""
    _organization_with_a_sale(engine, "25.00", "EUR", spent="10.85")
    with engine.begin() as conn:
        conn.execute(
            organization_setting.insert().values(
                organization_id="acme", reporting_currency="EUR", created_at=NOW, updated_at=NOW
            )
        )
    report = roas.RoasReport()
    roas.refresh_organization(engine, "acme", D4, D4, 1, report, groups=("campaign",))
    assert report.failures == {}
    t = meta_roas_by_campaign
    with engine.connect() as conn:
        row = conn.execute(sa.select(t)).one()
    assert (row.currency, row.spend, row.revenue, row.roas, row.revenue_currency_mismatch) == (
        "USD",
        D("10.85"),
        None,
        None,
        True,
    )
    assert (row.reporting_currency, row.spend_reporting, row.revenue_reporting, row.roas_reporting) == (
        "EUR",
        D("10.00"),
        D("25.00"),
        D("2.500000"),
    )


def test_reporting_in_the_groups_own_currency_needs_no_rate() -> None:
    """An amount already in the reporting currency is only rounded: no rate is looked up."""
    conversion = roas.Conversion("acme", "USD", {})
    assert conversion.convert(D("12.34"), "USD", D4) == D("12.34")
    assert conversion.convert(D("2.00"), "USD", D4 + dt.timedelta(days=1)) == D("2.00")
