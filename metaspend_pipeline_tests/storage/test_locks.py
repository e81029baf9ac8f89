"""Every writer of an organization's rows queues behind the organization's lock (PostgreSQL), and
reads what the writer before it committed.

A writer holds the lock in an open transaction; the writer under test starts in a thread. The
holder commits only once PostgreSQL shows a session waiting for an advisory lock in this database
(or the writer under test has finished without waiting, which the assertions then report).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline import roas
from metaspend_pipeline.storage import breakdowns as breakdown_store
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage import reach as reach_store
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.schema import BREAKDOWN_TABLES, REACH_TABLES, meta_roas_by_campaign, meta_spend_daily
from metaspend_pipeline_tests.storage.test_breakdowns_reach import D0, D1, _age, _load, _load_reach, _reach
from metaspend_pipeline_tests.storage.test_storage import DAY, NOW, ad_rows, write_raw
from metaspend_pipeline_tests.test_roas import D4, _margin_example
from metaspend_pipeline_tests.test_roas import spend as spend_row

pytestmark = pytest.mark.postgres

WAITERS = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _someone_waits(engine: sa.Engine, finished: threading.Event) -> bool:
    """True once a session of this database waits for an advisory lock; False if `finished` is set
    first (the writer under test did not wait) or after 10 s."""
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while time.monotonic() < deadline and not finished.is_set():
            if conn.execute(WAITERS).scalar_one():
                return True
            time.sleep(0.02)
    return False


def _behind_the_lock(
    engine: sa.Engine, organization: str, hold: Callable[[sa.Connection], None], write: Callable[[sa.Connection], None]
) -> bool:
    """`hold` writes under the organization's lock and stays open while `write` runs in a thread;
    whether `write` waited for the lock."""
    finished = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with engine.begin() as conn:
                write(conn)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            finished.set()

    with engine.begin() as conn:
        lock_organization(conn, organization)
        hold(conn)
        thread = threading.Thread(target=writer)
        thread.start()
        waited = _someone_waits(engine, finished)
    thread.join(10)
    assert errors == []
    return waited


def test_a_spend_refresh_waits_for_the_raw_writer_and_merges_what_it_committed(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    stats: list[spend_store.MergeStats] = []

    def refresh(conn: sa.Connection) -> None:
        stats.append(spend_store.refresh_spend(conn, "org-1", ["act_1"], DAY, DAY + dt.timedelta(days=2), NOW))

    assert _behind_the_lock(engine, "org-1", lambda conn: write_raw(conn, ad_rows(3)), refresh)
    assert stats[0].staged == 3  # the raw rows committed while the refresh waited
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(meta_spend_daily)).scalar_one() == 3


def test_a_roas_refresh_waits_for_the_spend_writer_and_reads_what_it_committed(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    _margin_example(engine)
    report = roas.RoasReport()

    def more_spend(conn: sa.Connection) -> None:
        conn.execute(meta_spend_daily.insert(), [spend_row(D4, "CAMPAIGN", "act_k", "12", None, None, "5.00")])

    def refresh(conn: sa.Connection) -> None:
        roas.refresh_organization(engine, "acme", D4, D4, 1, report, groups=("campaign",))

    assert _behind_the_lock(engine, "acme", more_spend, refresh)
    assert report.failures == {}
    t = meta_roas_by_campaign
    with engine.connect() as conn:
        spends = dict(conn.execute(sa.select(t.c.campaign_id, t.c.spend).where(t.c.organization_id == "acme")).all())
    # campaign 11's 10.00 was there before; campaign 12's 5.00 was committed while the refresh waited
    assert spends == {"11": Decimal("10.00"), "12": Decimal("5.00")}


def test_a_roas_replace_waits_for_the_organizations_lock(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    row = roas_store.RoasRow("acme", D4, "11", "USD", 1, 0, None, Decimal("1.00"), None, Decimal(0), None, False)

    def replace(conn: sa.Connection) -> None:
        roas_store.replace_roas(conn, "campaign", "acme", D4, D4, [row])

    assert _behind_the_lock(engine, "acme", lambda conn: None, replace)
    assert not _behind_the_lock(engine, "other", lambda conn: None, replace)  # another organization's lock


def test_a_breakdown_refresh_waits_for_the_raw_writer_and_merges_what_it_committed(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)
    stats: list[breakdown_store.BreakdownStats] = []

    def hold(conn: sa.Connection) -> None:
        _load(conn, [_age(D0, "1", "25-34", "female", "3.00"), _age(D1, "1", "65+", "male", "1.00")])

    def refresh(conn: sa.Connection) -> None:
        stats.append(breakdown_store.refresh_breakdown(conn, "org-1", ["act_1"], "age_gender", D0, D1, NOW))

    assert _behind_the_lock(engine, "org-1", hold, refresh)
    assert (stats[0].staged, stats[0].written) == (2, 2)  # the raw rows committed while the refresh waited
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(BREAKDOWN_TABLES["age_gender"])).scalar_one() == 2
    assert not _behind_the_lock(engine, "org-2", lambda conn: None, refresh)  # another organization's lock


def test_a_reach_refresh_waits_for_the_raw_writer_and_merges_what_it_committed(postgres_url: str) -> None:
    engine = db.engine_for(postgres_url)

    def hold(conn: sa.Connection) -> None:
        _load_reach(conn, [_reach("1", 100, 150, "10.00")])

    def refresh(conn: sa.Connection) -> None:
        reach_store.refresh_reach(conn, "org-1", ["act_1"], "week", D0, NOW)

    assert _behind_the_lock(engine, "org-1", hold, refresh)
    t = REACH_TABLES["week"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.c.campaign_id, t.c.reach)).all() == [("1", 100)]
