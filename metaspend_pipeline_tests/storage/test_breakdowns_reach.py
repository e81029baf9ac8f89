"""The breakdown and reach tables, written by the same merge as meta_spend_daily: a refresh makes its
scope equal the raw rows (values changed, rows gone deleted, a rerun writes nothing), nothing else is
touched, and a key includes the breakdown values."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.meta.models import ReachRow
from metaspend_pipeline.storage import breakdowns as breakdown_store
from metaspend_pipeline.storage import reach as reach_store
from metaspend_pipeline.storage.schema import BREAKDOWN_TABLES, REACH_TABLES
from metaspend_pipeline_tests.storage.test_storage import DAY, NOW, insight

D0, D1 = DAY, DAY + dt.timedelta(days=1)


def _age(day: dt.date, campaign: str, age: str, gender: str, spend: str, **kw: object):  # type: ignore[no-untyped-def]
    return dataclasses.replace(insight("campaign", day, (campaign, None, None), spend, **kw), breakdown=(age, gender))


def _load(conn: sa.Connection, rows: list, org: str = "org-1", account: str = "act_1", level: str = "CAMPAIGN") -> int:
    return breakdown_store.replace_raw_breakdowns(
        conn,
        organization_id=org,
        provider="FACEBOOK",
        ad_account_id=account,
        breakdown="age_gender",
        level=level,
        since=D0,
        until=D1,
        rows=rows,
        fetched_at=NOW,
    )


def _table(conn: sa.Connection) -> dict[tuple, tuple]:
    t = BREAKDOWN_TABLES["age_gender"]
    return {
        (r.organization_id, r.ad_account_id, r.date, r.level, r.campaign_id, r.age, r.gender): (
            r.spend,
            r.impressions,
            r.clicks,
            r.currency,
            r.provider,
            r.updated_at,
        )
        for r in conn.execute(sa.select(t))
    }


def test_a_breakdown_refresh_keys_rows_by_their_values_and_follows_the_raw_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        _load(
            conn,
            [
                _age(D0, "1", "25-34", "female", "3.00"),
                _age(D0, "1", "25-34", "male", "2.00"),  # same object and day, another value: another row
                _age(D0, "1", "65+", "unknown", "0.00", impressions=4, clicks=0),
                _age(D1, "1", "25-34", "female", "1.50"),
            ],
        )
        _load(conn, [_age(D0, "9", "18-24", "male", "7.00")], org="org-2")  # another organization: untouched
        first = breakdown_store.refresh_breakdown(conn, "org-1", ["act_1"], "age_gender", D0, D1, NOW)
        assert (first.staged, first.written, first.deleted) == (4, 4, 0)
        assert dict(first.spend_by_day_currency) == {(D0, "USD"): Decimal("5.00"), (D1, "USD"): Decimal("1.50")}
        # a rerun with the same rows writes nothing and keeps every timestamp
        before = _table(conn)
        later = NOW + dt.timedelta(hours=1)
        again = breakdown_store.refresh_breakdown(conn, "org-1", ["act_1"], "age_gender", D0, D1, later)
        assert (again.written, again.deleted) == (0, 0)
        assert _table(conn) == before
        # Meta restates one value and drops another: the change is written, the gone row deleted
        _load(conn, [_age(D0, "1", "25-34", "female", "3.50"), _age(D1, "1", "25-34", "female", "1.50")])
        third = breakdown_store.refresh_breakdown(conn, "org-1", ["act_1"], "age_gender", D0, D1, later)
        table = _table(conn)
    assert (third.written, third.deleted) == (1, 2)
    assert {k: v[:3] for k, v in table.items() if k[0] == "org-1"} == {
        ("org-1", "act_1", D0, "CAMPAIGN", "1", "25-34", "female"): (Decimal("3.50"), 10, 1),
        ("org-1", "act_1", D1, "CAMPAIGN", "1", "25-34", "female"): (Decimal("1.50"), 10, 1),
    }
    naive = {k: v[5].replace(tzinfo=None) for k, v in table.items()}  # SQLite reads timestamps back naive (UTC)
    assert naive[("org-1", "act_1", D0, "CAMPAIGN", "1", "25-34", "female")] == later.replace(tzinfo=None)  # rewritten
    assert naive[("org-1", "act_1", D1, "CAMPAIGN", "1", "25-34", "female")] == NOW.replace(tzinfo=None)  # unchanged
    assert ("org-2", "act_1", D0, "CAMPAIGN", "9", "18-24", "male") not in table  # never refreshed: no rows


def test_a_breakdown_value_meta_sends_twice_is_refused_by_the_key(engine: sa.Engine) -> None:
    """The raw key includes the values: the same object, day and value twice cannot both be stored."""
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _load(conn, [_age(D0, "1", "25-34", "female", "1.00"), _age(D0, "1", "25-34", "female", "2.00")])
    with engine.connect() as conn:  # nothing half-written
        assert conn.execute(sa.select(sa.func.count()).select_from(BREAKDOWN_TABLES["age_gender"])).scalar() == 0


def _reach(campaign: str | None, reach: int, impressions: int, spend: str, end: dt.date = D1) -> ReachRow:
    return ReachRow(
        ad_account_id="act_1",
        level="campaign" if campaign else "account",
        period_start=D0,
        period_end=end,
        campaign_id=campaign,
        adset_id=None,
        ad_id=None,
        currency="USD",
        reach=reach,
        frequency=(Decimal(impressions) / reach).quantize(Decimal("0.000001")),
        impressions=impressions,
        spend=Decimal(spend),
        raw={"reach": str(reach)},
    )


def _load_reach(conn: sa.Connection, rows: list[ReachRow], level: str = "CAMPAIGN") -> int:
    """org-1's raw weekly reach rows of act_1 for the week of D0 at `level`, replaced by `rows`."""
    return reach_store.replace_raw_reach(
        conn,
        organization_id="org-1",
        provider="FACEBOOK",
        ad_account_id="act_1",
        period="week",
        level=level,
        period_start=D0,
        rows=rows,
        fetched_at=NOW,
    )


def test_a_reach_refresh_replaces_the_period_as_it_stands_and_rewrites_it_later(engine: sa.Engine) -> None:
    """A week not over yet is written up to its last loaded day; the next refresh rewrites it whole."""
    with engine.begin() as conn:
        for level, rows in (
            ("CAMPAIGN", [_reach("1", 100, 150, "10.00", end=D0)]),
            ("ACCOUNT", [_reach(None, 90, 150, "10.00", end=D0)]),
        ):
            _load_reach(conn, rows, level)
        first = reach_store.refresh_reach(conn, "org-1", ["act_1"], "week", D0, NOW)
        _load_reach(conn, [_reach("1", 130, 300, "20.00")])
        second = reach_store.refresh_reach(conn, "org-1", ["act_1"], "week", D0, NOW)
        t = REACH_TABLES["week"]
        rows = {
            (r.level, r.campaign_id): (r.week_start, r.period_end, r.reach, r.frequency, r.impressions, r.spend)
            for r in conn.execute(sa.select(t))
        }
        monthly = conn.execute(sa.select(sa.func.count()).select_from(REACH_TABLES["month"])).scalar()
    assert (first.written, second.written, second.deleted) == (2, 1, 0)
    assert rows == {
        ("CAMPAIGN", "1"): (D0, D1, 130, Decimal("2.307692"), 300, Decimal("20.00")),
        ("ACCOUNT", None): (D0, D0, 90, Decimal("1.666667"), 150, Decimal("10.00")),
    }
    assert monthly == 0  # the weekly raw rows never reach the monthly table
