"""`validation.py` beyond test_validation.py: Meta's claimed purchase value against the CRM's revenue
per campaign (`attribution_gaps`), on hand-made ROAS rows whose sums and gaps are worked out by
hand, and the finding a person reads for one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline import validation
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.schema import meta_campaign
from metaspend_pipeline.validation import AttributionGap
from metaspend_pipeline_tests.dates import day

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
