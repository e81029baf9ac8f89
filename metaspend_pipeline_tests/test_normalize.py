"""`normalize_organization` without Dagster: window by window, its report adds up every merge, and a
failure is recorded for the organization with the window at fault while what was written stays."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.normalize import NormalizeReport, normalize_organization
from metaspend_pipeline.storage.schema import meta_spend_daily
from metaspend_pipeline_tests.test_storage import DAY, NOW, insight, replace_level, spend_table

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
