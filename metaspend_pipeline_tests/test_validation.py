"""The checks' plain functions (`validation.py`) on hand-made rows: what each finds and how it says it.

The asset checks around them are tested end to end in test_checks.py; here every boundary is hit
exactly (the one-cent tolerance, the ids each level needs, the declared currency) and each finding
is compared word for word, since a person reads it to go and look.

Below, Meta's claimed purchase value against the CRM's revenue per campaign (`attribution_gaps`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline import validation
from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.schema import meta_ad_account, meta_campaign, meta_spend_daily
from metaspend_pipeline.validation import AttributionGap, Finding
from metaspend_pipeline_tests.dates import day

D1, D2, D3, D4 = (dt.date(2026, 10, d) for d in (1, 2, 3, 4))
NOW = dt.datetime(2026, 10, 20, tzinfo=dt.UTC)


def spend_row(
    day: dt.date,
    level: str,
    ids: tuple[str | None, str | None, str | None],
    amount: str,
    *,
    org: str = "org-1",
    account: str = "act_1",
    currency: str = "USD",
) -> dict[str, object]:
    campaign, adset, ad = ids
    return {
        "organization_id": org,
        "provider": "FACEBOOK",
        "date": day,
        "level": level,
        "ad_account_id": account,
        "campaign_id": campaign,
        "adset_id": adset,
        "ad_id": ad,
        "currency": currency,
        "spend": Decimal(amount),
        "impressions": 1,
        "clicks": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }


def account_total(conn: sa.Connection, day: dt.date, amount: str, org: str = "org-1", account: str = "act_1") -> None:
    row = InsightRow(account, "account", day, None, None, None, "USD", Decimal(amount), 1, 0, {"spend": amount})
    raw_store.replace_raw_insights(
        conn,
        organization_id=org,
        provider="FACEBOOK",
        ad_account_id=account,
        level="ACCOUNT",
        since=day,
        until=day,
        rows=[row],
        fetched_at=NOW,
    )


def levels(day: dt.date, campaign: str, adset: str, ads: list[str], **kw: str) -> list[dict[str, object]]:
    rows = [spend_row(day, "CAMPAIGN", ("1", None, None), campaign, **kw)]
    rows.append(spend_row(day, "ADSET", ("1", "2", None), adset, **kw))
    rows += [spend_row(day, "AD", ("1", "2", str(100 + i)), amount, **kw) for i, amount in enumerate(ads)]
    return rows


def test_levels_may_differ_by_one_cent_and_not_by_two(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            meta_spend_daily.insert(),
            [
                *levels(D1, "10.00", "10.01", ["6.00", "4.00"]),  # one cent apart: rounding at Meta, fine
                *levels(D2, "10.02", "10.00", ["10.00"]),  # two cents: a finding
                *levels(D3, "5.00", "5.00", []),  # the ad rows are missing: their sum is 0.00
                *levels(D4, "1.00", "1.00", ["9.00"]),  # outside the range checked
                *levels(D2, "7.00", "7.00", ["7.00"], org="org-2", account="act_2"),
            ],
        )
        for day, total in ((D1, "9.99"), (D2, "10.00"), (D3, "5.00"), (D4, "1.00")):
            account_total(conn, day, total)
        account_total(conn, D2, "7.50", org="org-2", account="act_2")
        findings = validation.reconcile_levels(conn, D1, D3)
        only_org_2 = validation.reconcile_levels(conn, D1, D3, organizations=["org-2"])
        none = validation.reconcile_levels(conn, D1, D3, organizations=[])
    # D1: 9.99 / 10.00 / 10.01 / 10.00 spans two cents from the account total: a finding too
    assert [str(f) for f in findings] == [
        "organization org-1, ad account act_1, 2026-10-01: levels disagree: account 9.99, campaign 10.00, adset 10.01, ad 10.00",
        "organization org-1, ad account act_1, 2026-10-02: levels disagree: account 10.00, campaign 10.02, adset 10.00, ad 10.00",
        "organization org-1, ad account act_1, 2026-10-03: levels disagree: account 5.00, campaign 5.00, adset 5.00, ad 0.00",
        "organization org-2, ad account act_2, 2026-10-02: levels disagree: account 7.50, campaign 7.00, adset 7.00, ad 7.00",
    ]
    assert findings[0] == Finding("org-1", "act_1", D1, findings[0].detail)
    assert [f.organization_id for f in only_org_2] == ["org-2"]
    assert none == []


def test_exactly_one_cent_apart_everywhere_is_no_finding(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(meta_spend_daily.insert(), levels(D1, "10.01", "10.00", ["5.00", "5.01"]))
        account_total(conn, D1, "10.00")
        assert validation.reconcile_levels(conn, D1, D1) == []


def test_rows_without_the_ids_of_their_level_or_with_a_lower_levels_ids(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            meta_spend_daily.insert(),
            [
                spend_row(D2, "CAMPAIGN", ("1", None, None), "1.00"),  # fine
                spend_row(D2, "ADSET", ("1", "2", None), "1.00"),  # fine
                spend_row(D2, "AD", ("1", "2", "3"), "1.00"),  # fine
                spend_row(D2, "CAMPAIGN", (None, None, None), "1.00", account="act_2"),
                spend_row(D1, "CAMPAIGN", ("1", "2", None), "1.00", account="act_3"),
                spend_row(D2, "ADSET", ("1", None, None), "1.00", account="act_4"),
                spend_row(D3, "ADSET", ("1", "2", "3"), "1.00", account="act_5"),
                spend_row(D3, "AD", (None, "2", "3"), "1.00", org="org-0"),
                spend_row(D3, "AD", ("1", "2", None), "1.00", account="act_6"),
                spend_row(D4, "AD", ("1", None, "3"), "1.00", account="act_7"),  # outside the range
            ],
        )
        findings = validation.missing_keys(conn, D1, D3)
        only_org_0 = validation.missing_keys(conn, D1, D3, organizations=["org-0"])
    assert [(f.organization_id, f.date) for f in findings] == sorted((f.organization_id, f.date) for f in findings)
    assert sorted(str(f) for f in findings) == [
        "organization org-0, ad account act_1, 2026-10-03: AD row with campaign_id=None, adset_id=2, ad_id=3: "
        "a AD row needs exactly campaign_id, adset_id, ad_id",
        "organization org-1, ad account act_2, 2026-10-02: CAMPAIGN row with campaign_id=None, adset_id=None, "
        "ad_id=None: a CAMPAIGN row needs exactly campaign_id",
        "organization org-1, ad account act_3, 2026-10-01: CAMPAIGN row with campaign_id=1, adset_id=2, ad_id=None: "
        "a CAMPAIGN row needs exactly campaign_id",
        "organization org-1, ad account act_4, 2026-10-02: ADSET row with campaign_id=1, adset_id=None, "
        "ad_id=None: a ADSET row needs exactly campaign_id, adset_id",
        "organization org-1, ad account act_5, 2026-10-03: ADSET row with campaign_id=1, adset_id=2, ad_id=3: "
        "a ADSET row needs exactly campaign_id, adset_id",
        "organization org-1, ad account act_6, 2026-10-03: AD row with campaign_id=1, adset_id=2, ad_id=None: "
        "a AD row needs exactly campaign_id, adset_id, ad_id",
    ]
    assert [f.ad_account_id for f in only_org_0] == ["act_1"]


def test_an_ad_account_in_two_currencies_or_not_in_metas(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            meta_ad_account.insert(),
            [
                {"ad_account_id": a, "currency": c, "timezone_name": "UTC", "updated_at": NOW}
                for a, c in (("act_1", "USD"), ("act_2", "USD"), ("act_3", "EUR"))
            ],
        )
        conn.execute(
            meta_spend_daily.insert(),
            [
                spend_row(D1, "CAMPAIGN", ("1", None, None), "1.00", account="act_1"),  # as declared
                spend_row(D1, "CAMPAIGN", ("1", None, None), "1.00", account="act_2", org="org-2"),
                spend_row(D2, "CAMPAIGN", ("1", None, None), "1.00", account="act_2", org="org-2", currency="EUR"),
                spend_row(D1, "CAMPAIGN", ("1", None, None), "1.00", account="act_3", org="org-3"),  # USD, not EUR
                spend_row(D1, "CAMPAIGN", ("1", None, None), "1.00", account="act_4", org="org-4"),  # undeclared, one
                spend_row(D1, "CAMPAIGN", ("1", None, None), "1.00", account="act_5", org="org-5"),
                spend_row(D2, "CAMPAIGN", ("1", None, None), "1.00", account="act_5", org="org-5", currency="JPY"),
                spend_row(D4, "CAMPAIGN", ("1", None, None), "1.00", account="act_1", currency="GBP"),  # outside
            ],
        )
        findings = validation.currencies_per_ad_account(conn, D1, D3)
        only_org_3 = validation.currencies_per_ad_account(conn, D1, D3, organizations=["org-3"])
    assert [str(f) for f in findings] == [
        "organization org-2, ad account act_2: rows in EUR, USD; Meta gives the ad account's currency as USD",
        "organization org-3, ad account act_3: rows in USD; Meta gives the ad account's currency as EUR",
        "organization org-5, ad account act_5: rows in JPY, USD; Meta gives the ad account's currency as unknown",
    ]
    assert [(f.date, f.organization_id) for f in only_org_3] == [(None, "org-3")]


def test_roas_rows_with_sales_in_another_currency_are_named(engine: sa.Engine) -> None:
    def roas_row(day: dt.date, group_id: str, mismatch: bool, org: str = "org-1") -> roas_store.RoasRow:
        return roas_store.RoasRow(
            org, day, group_id, "USD", 1, 1, None if mismatch else Decimal("1.00"), Decimal("1.00"),
            None, Decimal("1"), None, mismatch,
        )  # fmt: skip

    with engine.begin() as conn:
        roas_store.replace_roas(conn, "ad", "org-1", D1, D4, [roas_row(D1, "7", True), roas_row(D2, "8", False)])
        roas_store.replace_roas(conn, "ad", "org-1", D4, D4, [roas_row(D4, "9", True)])
        roas_store.replace_roas(conn, "ad", "org-2", D1, D1, [roas_row(D1, "5", True, org="org-2")])
        findings = validation.roas_currency_mismatches(conn, "ad", D1, D3)
        only_org_2 = validation.roas_currency_mismatches(conn, "ad", D1, D3, organizations=["org-2"])
    assert [str(f) for f in findings] == [
        "organization org-1, 2026-10-01: ad 7: sales in another currency than the spend's (USD); revenue and roas left NULL",
        "organization org-2, 2026-10-01: ad 5: sales in another currency than the spend's (USD); revenue and roas left NULL",
    ]
    assert [(f.ad_account_id, f.organization_id) for f in only_org_2] == [(None, "org-2")]


def test_a_finding_names_what_it_knows() -> None:
    assert str(Finding("org-1", None, None, "x")) == "organization org-1: x"
    assert str(Finding("org-1", "act_1", None, "x")) == "organization org-1, ad account act_1: x"
    assert str(Finding("org-1", None, D1, "x")) == "organization org-1, 2026-10-01: x"


# --- Meta's claimed purchase value against the CRM's revenue (attribution_gaps) ------------------

D = Decimal
NOW = dt.datetime.now(dt.UTC)


def _row(
    org: str,
    n: int,
    campaign: str,
    *,
    leads: int = 1,
    revenue: str | None = "0.00",
    meta_value: str | None = None,
    currency: str = "USD",
    mismatch: bool = False,
) -> roas_store.RoasRow:
    return roas_store.RoasRow(
        org, day(n), campaign, currency, leads, 0, None if revenue is None else D(revenue), D("1.00"),
        None, None, None, mismatch, None, None if meta_value is None else D(meta_value),
    )  # fmt: skip


def _name(org: str, campaign: str, name: str) -> dict[str, object]:
    return {
        "organization_id": org,
        "ad_account_id": "act_1",
        "id": campaign,
        "name": name,
        "status": "ACTIVE",
        "effective_status": "ACTIVE",
        "last_seen_at": NOW,
    }


def test_attribution_gaps_sum_each_campaign_of_each_organization_over_the_range(engine: sa.Engine) -> None:
    """Range day(1)..day(3); day(4) is outside it and would change every campaign it touches.

    org-1 101 "Spring sale": Meta 30.00 + 20.00 = 50.00, CRM 20.00 + 60.00 = 80.00, one lead in all:
      gap |50 - 80| / 80 = 0.375.
    org-1 102: no lead in the range (the CRM does not track it): left out.
    org-1 103: spend in USD one day and EUR the other: left out.
    org-1 104: sales in another currency on day(2) (revenue NULL): left out.
    org-1 105: neither value nor revenue: left out.
    org-1 106, no name: Meta 12.50, CRM 0.00 (two leads, no sale): gap 1.
    org-2 101 "Autumn" (the same id in another organization, another name): 10.00 each, gap 0.
    """
    rows = {
        "org-1": [
            _row("org-1", 4, "106", meta_value="900.00", revenue="1.00"),
            _row("org-1", 1, "106", leads=2, meta_value="12.50"),
            _row("org-1", 1, "101", revenue="20.00", meta_value="30.00"),
            _row("org-1", 2, "101", leads=0, revenue="60.00", meta_value="20.00"),
            _row("org-1", 4, "101", leads=5, revenue="0.00", meta_value="1000.00"),
            _row("org-1", 1, "102", leads=0, revenue="5.00", meta_value="5.00"),
            _row("org-1", 4, "102", leads=3, revenue="5.00", meta_value="5.00"),
            _row("org-1", 1, "103", revenue="5.00", meta_value="5.00"),
            _row("org-1", 2, "103", revenue="5.00", meta_value="5.00", currency="EUR"),
            _row("org-1", 1, "104", revenue="5.00", meta_value="5.00"),
            _row("org-1", 2, "104", revenue=None, meta_value="5.00", mismatch=True),
            _row("org-1", 1, "105", leads=4),
        ],
        "org-2": [_row("org-2", 3, "101", revenue="10.00", meta_value="10.00")],
    }
    with engine.begin() as conn:
        for org, org_rows in rows.items():
            roas_store.replace_roas(conn, "campaign", org, day(1), day(4), org_rows)
        conn.execute(meta_campaign.insert(), [_name("org-2", "101", "Autumn"), _name("org-1", "101", "Spring sale")])
        gaps = validation.attribution_gaps(conn, day(1), day(3))
        only_org_2 = validation.attribution_gaps(conn, day(1), day(3), organizations=["org-2"])
    assert gaps == [
        AttributionGap("org-1", "101", "Spring sale", "USD", D("50.00"), D("80.00")),
        AttributionGap("org-1", "106", None, "USD", D("12.50"), D("0.00")),
        AttributionGap("org-2", "101", "Autumn", "USD", D("10.00"), D("10.00")),
    ]
    assert [g.gap for g in gaps] == [D("0.375"), D(1), D(0)]
    assert only_org_2 == gaps[2:]


def test_a_gap_finding_names_the_campaign_and_carries_its_figures() -> None:
    named = AttributionGap("org-1", "101", "Spring sale", "USD", D("50.00"), D("80.00"))
    finding = named.finding(D("0.3"))
    assert str(finding) == (
        "organization org-1: campaign 101 (Spring sale): Meta claims 50.00 USD of purchases, the CRM 80.00 USD "
        "of revenue; gap 37.5% > 30%"
    )
    assert (finding.ad_account_id, finding.date) == (None, None)
    # the figures the check's metadata lists per finding: 30 / 80 = 0.375
    assert dict(finding.figures) == {"meta_purchase_value": D("50.00"), "crm_revenue": D("80.00"), "gap": D("0.375")}
    unnamed = AttributionGap("org-1", "106", None, "EUR", D("12.50"), D("0.00")).finding(D("0.5"))
    assert str(unnamed) == (
        "organization org-1: campaign 106: Meta claims 12.50 EUR of purchases, the CRM 0.00 EUR of revenue; "
        "gap 100.0% > 50%"
    )
