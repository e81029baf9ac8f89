"""`normalize_organization` beyond test_normalize.py: Meta's conversions rebuilt beside the spend,
counted window by window in the report, against rows worked out by hand from the raw lists."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.normalize import NormalizeReport, normalize_organization
from metaspend_pipeline.storage.schema import meta_conversions_daily
from metaspend_pipeline_tests.dates import day
from metaspend_pipeline_tests.test_storage import insight, replace_level


def test_conversions_are_rebuilt_with_the_spend_and_counted_in_every_window(engine: sa.Engine) -> None:
    """Campaign 1 on day(1): `purchase` with Meta's `value` (the ad account's own setting: window
    `default`), 7d_click and 1d_view (windows the pipeline reads) and 28d_view (one it does not):
    3 rows, the count from `actions` and the value from `action_values`, NULL where only the other
    list has the window. On day(2): one `lead`, 1 row. Two windows of one day: 3 + 1 = 4 rows."""
    d1, d2 = day(1), day(2)
    purchase = {
        "actions": [{"action_type": "purchase", "value": "2", "7d_click": "1", "28d_view": "5"}],
        "action_values": [{"action_type": "purchase", "value": "20.00", "1d_view": "4.00"}],
    }
    lead = {"actions": [{"action_type": "lead", "value": "1"}]}
    with engine.begin() as conn:
        rows = [insight("campaign", d1, ("1", None, None), "3.00"), insight("campaign", d2, ("1", None, None), "2.00")]
        rows[0].raw.update(purchase)
        rows[1].raw.update(lead)
        replace_level(conn, "CAMPAIGN", rows)
    report = NormalizeReport()
    normalize_organization(engine, "org-1", ["act_1"], d1, d2, 1, report)
    assert report.failures == {}
    assert report.conversions == 4
    t = meta_conversions_daily
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                t.c.date, t.c.level, t.c.campaign_id, t.c.action_type, t.c.attribution_window, t.c.count, t.c.value
            )
        ).all()
    assert sorted(stored, key=str) == sorted(
        [
            (d1, "CAMPAIGN", "1", "purchase", "default", 2, Decimal("20.00")),
            (d1, "CAMPAIGN", "1", "purchase", "7d_click", 1, None),
            (d1, "CAMPAIGN", "1", "purchase", "1d_view", None, Decimal("4.00")),
            (d2, "CAMPAIGN", "1", "lead", "default", 1, None),
        ],
        key=str,
    )
