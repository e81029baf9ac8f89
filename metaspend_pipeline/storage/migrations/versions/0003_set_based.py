"""Set-based writes: typed columns and a unique key on the raw rows, the object -> ad account map,
and money as numbers on SQLite.

- `meta_raw_insights` gains the row's ids and numbers as parsed at fetch time (campaign_id,
  adset_id, ad_id, currency, spend, impressions, clicks), filled here from the stored JSON, and a
  unique key per (organization, ad account, level, day, object) instead of the plain scope index.
- `meta_object_account` maps each campaign, ad set and ad to its ad account, filled here from
  `meta_spend_daily`.
- On SQLite, money and ratio columns become NUMERIC (a double, exact to 15 significant digits)
  instead of decimal text, so that ORDER BY, comparisons, MIN and MAX are numeric. A stored value
  with more digits than a double keeps stops the migration, naming it: nothing is rounded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SQLITE_DIGITS = 15
RAW_KEY = (
    "organization_id",
    "ad_account_id",
    "level",
    "date",
    "coalesce(campaign_id, '')",
    "coalesce(adset_id, '')",
    "coalesce(ad_id, '')",
)
SPEND_KEY = (
    "organization_id",
    "date",
    "level",
    "coalesce(campaign_id, '')",
    "coalesce(adset_id, '')",
    "coalesce(ad_id, '')",
)
# table -> money columns (precision, scale) stored as text on SQLite until now
SQLITE_MONEY = {
    "meta_spend_daily": {"spend": (18, 2)},
    "sale": {"amount": (18, 2)},
    "meta_ad_account": {"timezone_offset_hours_utc": (5, 2)},
    **{
        f"meta_roas_by_{group}": {
            "revenue": (18, 2),
            "spend": (18, 2),
            "avg_ticket": (18, 2),
            "conversion_rate": (18, 6),
            "roas": (18, 6),
        }
        for group in ("campaign", "adset", "ad")
    },
}


OBJECT_OF_ROW = "CASE level WHEN 'CAMPAIGN' THEN campaign_id WHEN 'ADSET' THEN adset_id ELSE ad_id END"
# meta_object_account follows every insert into meta_spend_daily, whoever writes it: the ROAS
# step finds a lead's ad account through it instead of scanning the organization's history.
POSTGRES_TRIGGER_FUNCTION = f"""
CREATE FUNCTION metaspend_remember_object_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO meta_object_account (organization_id, level, object_id, ad_account_id)
  SELECT organization_id, level, object_id, max(ad_account_id)
  FROM (SELECT organization_id, level, ad_account_id, {OBJECT_OF_ROW} AS object_id FROM new_rows) AS o
  WHERE object_id IS NOT NULL
  GROUP BY organization_id, level, object_id
  ON CONFLICT (organization_id, level, object_id) DO NOTHING;
  RETURN NULL;
END $$
"""
POSTGRES_TRIGGER = (
    "CREATE TRIGGER meta_spend_daily_object_accounts AFTER INSERT ON meta_spend_daily "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION metaspend_remember_object_accounts()"
)
SQLITE_TRIGGER = """
CREATE TRIGGER meta_spend_daily_object_accounts AFTER INSERT ON meta_spend_daily
WHEN (CASE NEW.level WHEN 'CAMPAIGN' THEN NEW.campaign_id WHEN 'ADSET' THEN NEW.adset_id ELSE NEW.ad_id END) IS NOT NULL
BEGIN
  INSERT OR IGNORE INTO meta_object_account (organization_id, level, object_id, ad_account_id)
  VALUES (NEW.organization_id, NEW.level,
          CASE NEW.level WHEN 'CAMPAIGN' THEN NEW.campaign_id WHEN 'ADSET' THEN NEW.adset_id ELSE NEW.ad_id END,
          NEW.ad_account_id);
END
"""


def _money(precision: int, scale: int) -> sa.types.TypeEngine:
    return sa.Numeric(precision, scale)


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"

    for name, type_ in (
        ("campaign_id", sa.Text()),
        ("adset_id", sa.Text()),
        ("ad_id", sa.Text()),
        ("currency", sa.String(3)),
        ("spend", _money(18, 2)),
        ("impressions", sa.BigInteger()),
        ("clicks", sa.BigInteger()),
    ):
        op.add_column("meta_raw_insights", sa.Column(name, type_, nullable=True))
    if sqlite:
        field = "json_extract(row, '$.{}')".format
        op.execute(
            "UPDATE meta_raw_insights SET "
            f"campaign_id = {field('campaign_id')}, adset_id = {field('adset_id')}, ad_id = {field('ad_id')}, "
            f"currency = upper({field('account_currency')}), spend = CAST({field('spend')} AS NUMERIC), "
            f"impressions = CAST({field('impressions')} AS INTEGER), clicks = CAST({field('clicks')} AS INTEGER)"
        )
    else:
        op.execute(
            "UPDATE meta_raw_insights SET "
            "campaign_id = row->>'campaign_id', adset_id = row->>'adset_id', ad_id = row->>'ad_id', "
            "currency = upper(row->>'account_currency'), spend = (row->>'spend')::numeric(18, 2), "
            "impressions = (row->>'impressions')::bigint, clicks = (row->>'clicks')::bigint"
        )
    with op.batch_alter_table("meta_raw_insights") as batch:
        batch.alter_column("currency", existing_type=sa.String(3), nullable=False)
        batch.alter_column("spend", existing_type=_money(18, 2), nullable=False)
        batch.drop_index("ix_meta_raw_insights_scope")
    # rows that overlapping writers duplicated before the key existed: keep the newest
    key = ", ".join(RAW_KEY)
    op.execute(f"DELETE FROM meta_raw_insights WHERE id NOT IN (SELECT max(id) FROM meta_raw_insights GROUP BY {key})")
    op.execute(f"CREATE UNIQUE INDEX uq_meta_raw_insights_key ON meta_raw_insights ({key})")

    op.create_table(
        "meta_object_account",
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "level", "object_id", name="pk_meta_object_account"),
    )
    op.execute(
        "INSERT INTO meta_object_account (organization_id, level, object_id, ad_account_id) "
        "SELECT organization_id, level, object_id, max(ad_account_id) FROM ("
        "  SELECT organization_id, level, ad_account_id, "
        "  CASE level WHEN 'CAMPAIGN' THEN campaign_id WHEN 'ADSET' THEN adset_id ELSE ad_id END AS object_id "
        "  FROM meta_spend_daily) AS objects "
        "WHERE object_id IS NOT NULL GROUP BY organization_id, level, object_id"
    )

    if sqlite:
        _sqlite_money_as_numbers(conn)
        op.execute(SQLITE_TRIGGER)
    else:
        op.execute(POSTGRES_TRIGGER_FUNCTION)
        op.execute(POSTGRES_TRIGGER)


def _sqlite_money_as_numbers(conn: sa.Connection) -> None:
    for table, columns in SQLITE_MONEY.items():
        for column in columns:
            for (value,) in conn.exec_driver_sql(
                f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL AND length("{column}") > {SQLITE_DIGITS}'
            ):
                number = Decimal(str(value))
                if len(number.normalize().as_tuple().digits) > SQLITE_DIGITS:
                    raise RuntimeError(
                        f"{table}.{column} holds {value}, more than the {SQLITE_DIGITS} significant digits SQLite "
                        "keeps exactly as a number; move this warehouse to PostgreSQL instead"
                    )
    # the expression index cannot be reflected, so batch mode would drop it: recreate it by hand
    op.execute("DROP INDEX uq_meta_spend_daily_key")
    for table, columns in SQLITE_MONEY.items():
        with op.batch_alter_table(table, recreate="always") as batch:
            for column, (precision, scale) in columns.items():
                batch.alter_column(column, type_=_money(precision, scale))
    op.execute(f"CREATE UNIQUE INDEX uq_meta_spend_daily_key ON meta_spend_daily ({', '.join(SPEND_KEY)})")


def downgrade() -> None:
    op.execute("DROP TRIGGER meta_spend_daily_object_accounts" + ("" if _is_sqlite() else " ON meta_spend_daily"))
    if not _is_sqlite():
        op.execute("DROP FUNCTION metaspend_remember_object_accounts()")
    op.drop_table("meta_object_account")
    op.execute("DROP INDEX uq_meta_raw_insights_key")
    with op.batch_alter_table("meta_raw_insights") as batch:
        for name in ("clicks", "impressions", "spend", "currency", "ad_id", "adset_id", "campaign_id"):
            batch.drop_column(name)
        batch.create_index("ix_meta_raw_insights_scope", ["organization_id", "ad_account_id", "level", "date"])


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"
