"""The spend merge, id by id: which rows a refresh deletes, and what its stats count."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline_tests.storage.test_storage import DAY, NOW, insight, replace_level, spend_table

D0, D1 = DAY, DAY + dt.timedelta(days=1)


def test_a_refresh_deletes_each_campaign_ad_set_and_ad_whose_raw_row_is_gone(engine: sa.Engine) -> None:
    """Two campaigns, two ad sets and two ads on one day; one of each goes, its sibling of the same
    level, day and parents stays: the delete tells them apart by every id."""
    with engine.begin() as conn:
        replace_level(
            conn,
            "CAMPAIGN",
            [insight("campaign", D0, ("1", None, None), "5.00"), insight("campaign", D0, ("2", None, None), "1.00")],
        )
        replace_level(
            conn,
            "ADSET",
            [insight("adset", D0, ("1", "11", None), "3.00"), insight("adset", D0, ("1", "12", None), "2.00")],
        )
        replace_level(
            conn, "AD", [insight("ad", D0, ("1", "11", "111"), "1.00"), insight("ad", D0, ("1", "11", "112"), "2.00")]
        )
        assert spend_store.refresh_spend(conn, "org-1", ["act_1"], D0, D1, NOW).written == 6
        replace_level(conn, "CAMPAIGN", [insight("campaign", D0, ("1", None, None), "5.00")])
        replace_level(conn, "ADSET", [insight("adset", D0, ("1", "11", None), "3.00")])
        replace_level(conn, "AD", [insight("ad", D0, ("1", "11", "111"), "1.00")])
        second = spend_store.refresh_spend(conn, "org-1", ["act_1"], D0, D1, NOW)
        table = spend_table(conn)
    assert (second.staged, second.written, second.deleted) == (3, 0, 3)
    assert set(table) == {
        ("org-1", "act_1", D0, "CAMPAIGN", "1", None, None),
        ("org-1", "act_1", D0, "ADSET", "1", "11", None),
        ("org-1", "act_1", D0, "AD", "1", "11", "111"),
    }


def test_the_stats_count_every_row_of_a_day_and_level_whatever_its_currency(engine: sa.Engine) -> None:
    """Raw rows are summed per (day, level, currency): a day and level in two currencies is two sums
    that add up to its count, and spend stays per currency."""
    with engine.begin() as conn:
        replace_level(
            conn,
            "CAMPAIGN",
            [
                insight("campaign", D0, ("1", None, None), "5.00"),
                insight("campaign", D0, ("2", None, None), "1.25", currency="EUR"),
                insight("campaign", D0, ("3", None, None), "0.50", currency="EUR"),
                insight("campaign", D1, ("1", None, None), "4.00"),
            ],
        )
        replace_level(conn, "AD", [insight("ad", D0, ("1", "11", "111"), "5.00")])
        stats = spend_store.refresh_spend(conn, "org-1", ["act_1"], D0, D1, NOW)
    assert dict(stats.rows_by_day_level) == {(D0, "CAMPAIGN"): 3, (D0, "AD"): 1, (D1, "CAMPAIGN"): 1}
    # campaign level only: 1.25 + 0.50 = 1.75 EUR on D0
    assert dict(stats.spend_by_day_currency) == {
        (D0, "USD"): Decimal("5.00"),
        (D0, "EUR"): Decimal("1.75"),
        (D1, "USD"): Decimal("4.00"),
    }
