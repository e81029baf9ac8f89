"""Foundation: connected accounts, encrypted tokens, daily spend, and the product's lead and sale.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Exact decimals; SQLite keeps them as text because its NUMERIC is binary floating point.
Money = sa.Numeric(18, 2).with_variant(sa.String(20), "sqlite")
Timestamp = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "connected_account",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("ad_accounts", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint("provider IN ('INSTAGRAM', 'FACEBOOK')", name=op.f("ck_connected_account_provider")),
        sa.CheckConstraint(
            "status IN ('CONNECTED', 'NEEDS_REAUTH', 'DISCONNECTED')",
            name=op.f("ck_connected_account_status"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_connected_account"),
    )
    op.create_index("ix_connected_account_organization_id", "connected_account", ["organization_id"])

    op.create_table(
        "oauth_token",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("connected_account_id", sa.Text, nullable=False),
        sa.Column("access_token_encrypted", sa.Text, nullable=False),
        sa.Column("token_type", sa.Text, nullable=True),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("last_refreshed_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_oauth_token"),
        sa.ForeignKeyConstraint(
            ["connected_account_id"],
            ["connected_account.id"],
            name="fk_oauth_token_connected_account_id_connected_account",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_oauth_token_connected_account_id", "oauth_token", ["connected_account_id"])

    op.create_table(
        "meta_spend_daily",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("campaign_id", sa.Text, nullable=True),
        sa.Column("adset_id", sa.Text, nullable=True),
        sa.Column("ad_id", sa.Text, nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spend", Money, nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=True),
        sa.Column("clicks", sa.BigInteger, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_meta_spend_daily"),
        sa.CheckConstraint("provider IN ('INSTAGRAM', 'FACEBOOK')", name=op.f("ck_meta_spend_daily_provider")),
        sa.CheckConstraint("level IN ('CAMPAIGN', 'ADSET', 'AD')", name=op.f("ck_meta_spend_daily_level")),
    )
    # NULLs count as equal in the natural key (see schema.py).
    op.create_index(
        "uq_meta_spend_daily_key",
        "meta_spend_daily",
        [
            "organization_id",
            "date",
            "level",
            sa.text("coalesce(campaign_id, '')"),
            sa.text("coalesce(adset_id, '')"),
            sa.text("coalesce(ad_id, '')"),
        ],
        unique=True,
    )
    op.create_index("ix_meta_spend_daily_ad_account_id_date", "meta_spend_daily", ["ad_account_id", "date"])

    op.create_table(
        "lead",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("campaign_id", sa.Text, nullable=True),
        sa.Column("adset_id", sa.Text, nullable=True),
        sa.Column("ad_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_lead"),
    )
    op.create_index("ix_lead_organization_id_created_at", "lead", ["organization_id", "created_at"])

    op.create_table(
        "sale",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("lead_id", sa.Text, nullable=True),
        sa.Column("amount", Money, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("closed_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sale"),
    )
    op.create_index("ix_sale_organization_id_lead_id", "sale", ["organization_id", "lead_id"])


def downgrade() -> None:
    for table in ("sale", "lead", "meta_spend_daily", "oauth_token", "connected_account"):
        op.drop_table(table)
