"""Meta's conversions, ECB exchange rates, each organization's reporting currency, and the ROAS
tables' columns for both (Meta's view of purchases and the reporting currency).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.comments import comment_named_views, comment_tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
Money = sa.Numeric(18, 2)
Ratio = sa.Numeric(18, 6)
GROUPS = ("campaign", "adset", "ad")
ROAS_COLUMNS = (
    ("meta_purchases", sa.BigInteger),
    ("meta_purchase_value", Money),
    ("meta_roas", Ratio),
    ("reporting_currency", sa.String(3)),
    ("spend_reporting", Money),
    ("revenue_reporting", Money),
    ("roas_reporting", Ratio),
)

_METRICS_0004 = """r.currency, r.leads_count, r.sales_count, r.revenue, r.spend, r.avg_ticket,
    r.conversion_rate, r.roas, r.revenue_currency_mismatch, r.updated_at"""
_METRICS = (
    _METRICS_0004
    + """, r.meta_purchases, r.meta_purchase_value, r.meta_roas,
    r.reporting_currency, r.spend_reporting, r.revenue_reporting, r.roas_reporting"""
)
_CAMPAIGN = """c.name AS campaign_name, c.status AS campaign_status,
    c.effective_status AS campaign_effective_status, c.objective"""
_ADSET = """s.name AS adset_name, s.status AS adset_status, s.effective_status AS adset_effective_status"""
_AD = """a.name AS ad_name, a.status AS ad_status, a.effective_status AS ad_effective_status"""


def _views(metrics: str) -> dict[str, str]:
    """The named ROAS views of migration 0004, with `metrics` as the ROAS table's columns."""
    return {
        "meta_roas_by_campaign_named": f"""
SELECT r.organization_id, r.date, c.ad_account_id, r.campaign_id, {_CAMPAIGN}, {metrics}
FROM meta_roas_by_campaign r
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = r.campaign_id""",
        "meta_roas_by_adset_named": f"""
SELECT r.organization_id, r.date, s.ad_account_id, r.adset_id, {_ADSET}, s.campaign_id, {_CAMPAIGN}, {metrics}
FROM meta_roas_by_adset r
LEFT JOIN meta_adset s ON s.organization_id = r.organization_id AND s.id = r.adset_id
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = s.campaign_id""",
        "meta_roas_by_ad_named": f"""
SELECT r.organization_id, r.date, a.ad_account_id, r.ad_id, {_AD}, a.adset_id, {_ADSET}, a.campaign_id, {_CAMPAIGN},
    {metrics}
FROM meta_roas_by_ad r
LEFT JOIN meta_ad a ON a.organization_id = r.organization_id AND a.id = r.ad_id
LEFT JOIN meta_adset s ON s.organization_id = r.organization_id AND s.id = a.adset_id
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = a.campaign_id""",
    }


def _drop_views() -> None:
    for name in _views(_METRICS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create_views(metrics: str) -> None:
    for name, query in _views(metrics).items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def upgrade() -> None:
    op.create_table(
        "meta_conversions_daily",
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("campaign_id", sa.Text, nullable=True),
        sa.Column("adset_id", sa.Text, nullable=True),
        sa.Column("ad_id", sa.Text, nullable=True),
        sa.Column("action_type", sa.Text, nullable=False),
        sa.Column("attribution_window", sa.Text, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=True),
        sa.Column("value", Money, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.CheckConstraint("level IN ('CAMPAIGN', 'ADSET', 'AD')", name="ck_meta_conversions_daily_level"),
    )
    op.create_index("ix_meta_conversions_daily_ad_account_id_date", "meta_conversions_daily", ["ad_account_id", "date"])
    op.create_index(
        "uq_meta_conversions_daily_key",
        "meta_conversions_daily",
        [
            "organization_id",
            "date",
            "level",
            sa.text("coalesce(campaign_id, '')"),
            sa.text("coalesce(adset_id, '')"),
            sa.text("coalesce(ad_id, '')"),
            "action_type",
            "attribution_window",
        ],
        unique=True,
    )
    op.create_table(
        "fx_rates_daily",
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("rate", Ratio, nullable=False),
        sa.Column("ecb_date", sa.Date, nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("date", "currency", name="pk_fx_rates_daily"),
    )
    op.create_table(
        "organization_setting",
        sa.Column("organization_id", sa.Text, primary_key=True),
        sa.Column("reporting_currency", sa.String(3), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("organization_id", name="pk_organization_setting"),
    )
    for group in GROUPS:
        for name, type_ in ROAS_COLUMNS:
            op.add_column(f"meta_roas_by_{group}", sa.Column(name, type_, nullable=True))
    _drop_views()
    _create_views(_METRICS)
    comment_tables(only={"meta_conversions_daily", "fx_rates_daily", *(f"meta_roas_by_{g}" for g in GROUPS)})
    comment_named_views()


def downgrade() -> None:
    _drop_views()  # SQLite rebuilds a table to drop a column: no view may refer to it meanwhile
    for group in GROUPS:
        with op.batch_alter_table(f"meta_roas_by_{group}") as batch:
            for name, _ in reversed(ROAS_COLUMNS):
                batch.drop_column(name)
    _create_views(_METRICS_0004)
    comment_named_views()
    op.drop_table("organization_setting")
    op.drop_table("fx_rates_daily")
    op.drop_index("uq_meta_conversions_daily_key", table_name="meta_conversions_daily")
    op.drop_index("ix_meta_conversions_daily_ad_account_id_date", table_name="meta_conversions_daily")
    op.drop_table("meta_conversions_daily")
