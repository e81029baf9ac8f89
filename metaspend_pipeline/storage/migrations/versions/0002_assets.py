"""Tables the assets write: raw insights, ad account metadata, the fetch log, ROAS by level.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def exact(precision: int, scale: int) -> sa.types.TypeEngine:
    """NUMERIC on PostgreSQL; decimal text on SQLite, whose NUMERIC is binary floating point."""
    return sa.Numeric(precision, scale).with_variant(sa.String(precision + 2), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meta_raw_insights",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("row", Json, nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meta_raw_insights"),
        sa.CheckConstraint("level IN ('ACCOUNT', 'CAMPAIGN', 'ADSET', 'AD')", name=op.f("ck_meta_raw_insights_level")),
    )
    op.create_index(
        "ix_meta_raw_insights_scope", "meta_raw_insights", ["organization_id", "ad_account_id", "level", "date"]
    )

    op.create_table(
        "meta_ad_account",
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("timezone_name", sa.Text, nullable=False),
        sa.Column("timezone_offset_hours_utc", exact(5, 2), nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("ad_account_id", name="pk_meta_ad_account"),
    )

    op.create_table(
        "meta_fetch_log",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=True),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("until", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("throttle_wait_seconds", sa.Float, nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meta_fetch_log"),
        sa.CheckConstraint("status IN ('OK', 'FAILED')", name=op.f("ck_meta_fetch_log_status")),
    )
    op.create_index("ix_meta_fetch_log_run_id", "meta_fetch_log", ["run_id"])

    for group in ("campaign", "adset", "ad"):
        op.create_table(
            f"meta_roas_by_{group}",
            sa.Column("organization_id", sa.Text, nullable=False),
            sa.Column("date", sa.Date, nullable=False),
            sa.Column(f"{group}_id", sa.Text, nullable=False),
            sa.Column("currency", sa.String(3), nullable=True),
            sa.Column("leads_count", sa.Integer, nullable=False),
            sa.Column("sales_count", sa.Integer, nullable=False),
            sa.Column("revenue", exact(18, 2), nullable=True),
            sa.Column("spend", exact(18, 2), nullable=False),
            sa.Column("avg_ticket", exact(18, 2), nullable=True),
            sa.Column("conversion_rate", exact(18, 6), nullable=True),
            sa.Column("roas", exact(18, 6), nullable=True),
            sa.Column("revenue_currency_mismatch", sa.Boolean, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
            sa.PrimaryKeyConstraint("organization_id", "date", f"{group}_id", name=f"pk_meta_roas_by_{group}"),
        )


def downgrade() -> None:
    for table in (
        "meta_roas_by_ad",
        "meta_roas_by_adset",
        "meta_roas_by_campaign",
        "meta_fetch_log",
        "meta_ad_account",
        "meta_raw_insights",
    ):
        op.drop_table(table)
