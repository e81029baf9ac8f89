"""`normalize_organization` without Dagster: window by window, its report adds up every merge, and a
failure is recorded for the organization with the window at fault while what was written stays.

Below, Meta's conversions rebuilt beside the spend, counted window by window in the report.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.normalize import NormalizeReport, normalize_organization
from metaspend_pipeline.storage.schema import meta_conversions_daily, meta_spend_daily
from metaspend_pipeline_tests.dates import day
from metaspend_pipeline_tests.storage.test_storage import DAY, NOW, insight, replace_level, spend_table

D0, D1, D2 = DAY, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=2)


def raw_days(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        replace_level(conn, "CAMPAIGN", [insight("campaign", d, ("1", None, None), "3.00") for d in (D0, D1, D2)])
        replace_level(conn, "AD", [insight("ad", d, ("1", "2", ad), "1.50") for d in (D0, D1, D2) for ad in ("5", "6")])


def test_the_report_adds_up_every_window(engine: sa.Engine) -> None:
    raw_days(engine)
    report = NormalizeReport()
    normalize_organization(engine, "org-1", ["act_1"], D0, D2, 2, report)  # windows: D0..D1, D2
    assert (report.written, report.unchanged, report.deleted, report.rows, report.failures) == (9, 0, 0, 9, {})
    assert dict(report.rows_by_day_level) == {
        (d, level): n for d in (D0, D1, D2) for level, n in (("CAMPAIGN", 1), ("AD", 2))
    }
    assert dict(report.spend_by_day_currency) == {(d, "USD"): Decimal("3.00") for d in (D0, D1, D2)}

    with engine.begin() as conn:
        replace_level(conn, "AD", [insight("ad", d, ("1", "2", "5"), "1.50") for d in (D0, D1, D2)])  # ad 6 gone
    again = NormalizeReport()
    normalize_organization(engine, "org-1", ["act_1"], D0, D2, 1, again)
    assert (again.written, again.unchanged, again.deleted, again.rows) == (0, 6, 3, 6)
    with engine.connect() as conn:
        assert len(spend_table(conn)) == 6


def test_a_failing_window_is_recorded_and_the_windows_before_it_stay(
    engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    raw_days(engine)
    with engine.begin() as conn:  # campaign 1 on D2 already stored under another ad account: the same key
        conn.execute(
            meta_spend_daily.insert().values(
                organization_id="org-1", provider="FACEBOOK", date=D2, level="CAMPAIGN", ad_account_id="act_2",
                campaign_id="1", currency="USD", spend=Decimal("1.00"), created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    report = NormalizeReport()
    with caplog.at_level(logging.ERROR, logger="metaspend_pipeline.normalize"):
        normalize_organization(engine, "org-1", ["act_1"], D0, D2, 2, report)
    assert list(report.failures) == ["org-1"]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, report.failures["org-1"])]
    assert report.failures["org-1"].startswith(f"organization org-1, {D2}..{D2}: IntegrityError: ")
    assert (report.written, report.rows) == (6, 6)  # the first window's
    with engine.connect() as conn:
        stored = spend_table(conn)
    assert sorted({k[2] for k in stored if k[1] == "act_1"}) == [D0, D1]


def test_one_report_adds_up_several_organizations(engine: sa.Engine) -> None:
    """The asset runs every organization into one report: the same day and currency add up."""
    with engine.begin() as conn:
        replace_level(conn, "CAMPAIGN", [insight("campaign", D0, ("1", None, None), "3.00")])
        replace_level(
            conn, "CAMPAIGN", [insight("campaign", D0, ("8", None, None), "4.25")], org="org-2", account="act_2"
        )
    report = NormalizeReport()
    normalize_organization(engine, "org-1", ["act_1"], D0, D0, 1, report)
    normalize_organization(engine, "org-2", ["act_2"], D0, D0, 1, report)
    assert dict(report.spend_by_day_currency) == {(D0, "USD"): Decimal("7.25")}
    assert dict(report.rows_by_day_level) == {(D0, "CAMPAIGN"): 2}
    assert (report.written, report.rows) == (2, 2)


# --- Meta's conversions rebuilt beside the spend -------------------------------------------------


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
