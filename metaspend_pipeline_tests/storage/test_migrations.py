from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import meta_spend_daily, metadata

CONTRACT = {
    "connected_account": {
        "id",
        "organization_id",
        "provider",
        "status",
        "ad_accounts",
        "created_at",
        "updated_at",
    },
    "oauth_token": {
        "id",
        "connected_account_id",
        "access_token_encrypted",
        "token_type",
        "expires_at",
        "last_refreshed_at",
        "created_at",
        "updated_at",
    },
    "meta_spend_daily": {
        "id",
        "organization_id",
        "provider",
        "date",
        "level",
        "ad_account_id",
        "campaign_id",
        "adset_id",
        "ad_id",
        "currency",
        "spend",
        "impressions",
        "clicks",
        "created_at",
        "updated_at",
    },
    "lead": {"id", "organization_id", "created_at", "campaign_id", "adset_id", "ad_id"},
    "sale": {"id", "organization_id", "lead_id", "amount", "currency", "closed_at"},
}


def _spend_row(**overrides: object) -> dict[str, object]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    row = {
        "organization_id": "org-1",
        "provider": "INSTAGRAM",
        "date": dt.date(2026, 1, 15),
        "level": "CAMPAIGN",
        "ad_account_id": "act_1",
        "campaign_id": "120001",
        "adset_id": None,
        "ad_id": None,
        "currency": "USD",
        "spend": Decimal("14.35"),
        "impressions": 185,
        "clicks": 9,
        "created_at": now,
        "updated_at": now,
    }
    row.update(overrides)
    return row


def test_migrations_from_empty_create_the_contract_tables(empty_db_url: str) -> None:
    db.upgrade(empty_db_url)
    inspector = sa.inspect(db.engine_for(empty_db_url))
    for table, columns in CONTRACT.items():
        assert {c["name"] for c in inspector.get_columns(table)} >= columns, table
    assert db.current_revision(empty_db_url) == db.head_revision()


def test_upgrade_is_idempotent(empty_db_url: str) -> None:
    db.upgrade(empty_db_url)
    db.upgrade(empty_db_url)
    assert db.current_revision(empty_db_url) == db.head_revision()


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
def test_migrations_match_the_schema_module(db_url: str) -> None:
    """schema.py (used by the queries) and the migrations (used by databases) cannot drift."""
    with db.engine_for(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), metadata)
    # Expression indexes cannot be reflected on every backend; alembic reports them as skipped.
    assert [
        d
        for d in diff
        if not (
            isinstance(d, tuple) and d[0] in {"add_index", "remove_index"} and d[1].name == "uq_meta_spend_daily_key"
        )
    ] == []


def test_campaign_level_row_written_twice_stays_one_row(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(meta_spend_daily.insert().values(**_spend_row()))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(meta_spend_daily.insert().values(**_spend_row(spend=Decimal("1.00"))))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(meta_spend_daily.c.spend)).all()
    assert rows == [(Decimal("14.35"),)]


def test_rows_differing_only_in_a_null_id_are_distinct(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(meta_spend_daily.insert().values(**_spend_row()))
        conn.execute(meta_spend_daily.insert().values(**_spend_row(level="ADSET", adset_id="230001")))
        conn.execute(meta_spend_daily.insert().values(**_spend_row(level="ADSET", adset_id="230002")))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(meta_spend_daily)).scalar() == 3


def test_money_round_trips_as_decimal(engine: sa.Engine) -> None:
    # PostgreSQL keeps NUMERIC(18, 2) whole; SQLite keeps the 15 significant digits a double holds
    amount = Decimal("9999999999999999.99") if engine.dialect.name == "postgresql" else Decimal("9999999999999.99")
    with engine.begin() as conn:
        conn.execute(meta_spend_daily.insert().values(**_spend_row(spend=amount)))
    with engine.connect() as conn:
        value = conn.execute(sa.select(meta_spend_daily.c.spend)).scalar_one()
    assert isinstance(value, Decimal)
    assert value == amount


def test_money_is_never_rounded_in_silence(engine: sa.Engine) -> None:
    for amount, message in (("0.025", "more than 2 decimal places"), ("1e16", "does not fit NUMERIC")):
        with pytest.raises(sa.exc.StatementError, match=message), engine.begin() as conn:
            conn.execute(meta_spend_daily.insert().values(**_spend_row(spend=Decimal(amount))))
    if engine.dialect.name == "sqlite":
        with pytest.raises(sa.exc.StatementError, match="SQLite keeps 15"), engine.begin() as conn:
            conn.execute(meta_spend_daily.insert().values(**_spend_row(spend=Decimal("99999999999999.99"))))
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(meta_spend_daily)).scalar_one() == 0


def test_money_sorts_compares_and_sums_as_numbers(engine: sa.Engine) -> None:
    """What a BI tool asks of the table, in plain SQL, on either database."""
    amounts = ["98.04", "1198395.00", "99.32", "1000.01", "0.10", "0.20", "1000.00"]
    with engine.begin() as conn:
        for i, amount in enumerate(amounts):
            conn.execute(meta_spend_daily.insert().values(**_spend_row(campaign_id=str(i), spend=Decimal(amount))))
    with engine.connect() as conn:
        top = conn.exec_driver_sql("SELECT spend FROM meta_spend_daily ORDER BY spend DESC LIMIT 1").scalar_one()
        over = conn.exec_driver_sql("SELECT count(*) FROM meta_spend_daily WHERE spend > 1000").scalar_one()
        low, high = conn.exec_driver_sql("SELECT min(spend), max(spend) FROM meta_spend_daily").one()
        total = conn.exec_driver_sql("SELECT round(sum(spend), 2) FROM meta_spend_daily").scalar_one()
    assert Decimal(str(top)) == Decimal("1198395.00")
    assert over == 2
    assert (Decimal(str(low)), Decimal(str(high))) == (Decimal("0.10"), Decimal("1198395.00"))
    assert Decimal(str(total)).quantize(Decimal("0.01")) == sum(Decimal(a) for a in amounts)


def test_unknown_database_is_a_clear_error() -> None:
    url = "postgresql://postgres@127.0.0.1:1/none"
    with pytest.raises(db.DatabaseError, match="127.0.0.1:1/none"):
        db.migrated_engine(url)
