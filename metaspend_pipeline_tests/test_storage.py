"""The write paths themselves: bulk statements, the spend merge, and what it leaves alone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.raw import bulk_insert
from metaspend_pipeline.storage.schema import meta_spend_daily

DAY = dt.date(2026, 10, 1)


def rows(n: int, spend: str = "1.00", account: str = "act_1") -> list[dict[str, object]]:
    return [
        {
            "organization_id": "org-1",
            "provider": "INSTAGRAM",
            "date": DAY + dt.timedelta(days=i % 3),
            "level": "AD",
            "ad_account_id": account,
            "campaign_id": "1",
            "adset_id": "2",
            "ad_id": str(1000 + i),
            "currency": "USD",
            "spend": Decimal(spend),
            "impressions": i,
            "clicks": 0,
        }
        for i in range(n)
    ]


def count_inserts(engine: sa.Engine, table: str):  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            seen.append("executemany" if executemany else "execute")

    sa.event.listen(engine, "before_cursor_execute", listener)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", listener)


def test_bulk_insert_sends_one_statement_per_batch(engine: sa.Engine) -> None:
    seen, stop = count_inserts(engine, "meta_spend_staging")
    try:
        with engine.begin() as conn:
            spend_store.replace_spend(
                conn, [spend_store.SpendScope("org-1", "act_1", DAY, DAY + dt.timedelta(days=2))], rows(5000)
            )
    finally:
        stop()
    assert seen == ["execute"] * 3  # 5,000 rows of 12 columns: batches of 2,000 (24,000 parameters)


def test_bulk_insert_keeps_under_the_parameter_limit(engine: sa.Engine) -> None:
    table = sa.Table("wide", sa.MetaData(), *[sa.Column(f"c{i}", sa.Integer) for i in range(100)])
    with engine.begin() as conn:
        table.create(conn)
        assert bulk_insert(conn, table, ({f"c{i}": r for i in range(100)} for r in range(1000))) == 1000
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 1000
        table.drop(conn)


def test_the_merge_updates_changes_keeps_the_rest_and_deletes_what_is_gone(engine: sa.Engine) -> None:
    scope = [spend_store.SpendScope("org-1", "act_1", DAY, DAY + dt.timedelta(days=2))]
    with engine.begin() as conn:
        first = spend_store.replace_spend(conn, scope, rows(6))
        # another ad account of the organization, outside the scope: must survive
        elsewhere = {**rows(1)[0], "ad_account_id": "act_2", "ad_id": "2000"}
        spend_store.replace_spend(conn, [spend_store.SpendScope("org-1", "act_2", DAY, DAY)], [elsewhere])
    t = meta_spend_daily
    with engine.connect() as conn:
        before = {r.ad_id: r for r in conn.execute(sa.select(t).where(t.c.ad_account_id == "act_1"))}
    changed = rows(5)
    changed[0]["spend"] = Decimal("9.99")
    with engine.begin() as conn:
        second = spend_store.replace_spend(conn, scope, changed)
    with engine.connect() as conn:
        after = {r.ad_id: r for r in conn.execute(sa.select(t).where(t.c.ad_account_id == "act_1"))}
        other = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.ad_account_id == "act_2")).scalar_one()
    assert (first.staged, first.written, first.deleted) == (6, 6, 0)
    assert (second.staged, second.written, second.deleted, second.unchanged) == (5, 1, 1, 4)
    assert set(after) == set(before) - {"1005"}
    assert after["1000"].spend == Decimal("9.99")
    assert after["1000"].created_at == before["1000"].created_at
    assert after["1001"] == before["1001"]  # untouched, updated_at included
    assert other == 1
