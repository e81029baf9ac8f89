"""Spend by age and gender, country and placement (Meta's breakdowns), reach and frequency per week
and month, their raw rows, their named views for BI, and what each fetch of the log fetched.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.comments import comment_breakdown_and_reach_views, comment_tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
Money = sa.Numeric(18, 2)
Ratio = sa.Numeric(18, 6)
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SPEND_LEVELS = "level IN ('CAMPAIGN', 'ADSET', 'AD')"
INSIGHT_LEVELS = "level IN ('ACCOUNT', 'CAMPAIGN', 'ADSET', 'AD')"
BREAKDOWNS = {
    "age_gender": ("age", "gender"),
    "country": ("country",),
    "placement": ("publisher_platform", "platform_position", "device_platform"),
}
REACH = {"weekly": "week_start", "monthly": "month_start"}
IDS = (sa.text("coalesce(campaign_id, '')"), sa.text("coalesce(adset_id, '')"), sa.text("coalesce(ad_id, '')"))

_NAMES = """c.name AS campaign_name, c.objective, s.name AS adset_name, a.name AS ad_name"""
_JOINS = """
LEFT JOIN meta_campaign c ON c.organization_id = t.organization_id AND c.id = t.campaign_id
LEFT JOIN meta_adset s ON s.organization_id = t.organization_id AND s.id = t.adset_id
LEFT JOIN meta_ad a ON a.organization_id = t.organization_id AND a.id = t.ad_id"""


def views() -> dict[str, str]:
    """The named views: each table with the names of its campaign, ad set and ad (LEFT JOIN: a row
    whose objects were never fetched keeps its numbers)."""
    out = {}
    for name, columns in BREAKDOWNS.items():
        values = ", ".join(f"t.{c}" for c in columns)
        out[f"meta_spend_by_{name}_named"] = f"""
SELECT t.organization_id, t.date, t.level, t.ad_account_id, t.campaign_id, t.adset_id, t.ad_id, {_NAMES},
    {values}, t.currency, t.spend, t.impressions, t.clicks, t.updated_at
FROM meta_spend_by_{name} t{_JOINS}"""
    for period, start in REACH.items():
        out[f"meta_reach_{period}_named"] = f"""
SELECT t.organization_id, t.ad_account_id, t.level, t.campaign_id, t.adset_id, t.ad_id, {_NAMES},
    t.{start}, t.period_end, t.currency, t.reach, t.frequency, t.impressions, t.spend, t.updated_at
FROM meta_reach_{period} t{_JOINS}"""
    return out


def upgrade() -> None:
    with op.batch_alter_table("meta_fetch_log") as batch:
        batch.add_column(sa.Column("report", sa.Text, nullable=False, server_default="spend"))
    op.create_table(
        "meta_raw_breakdowns",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("breakdown", sa.Text, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("campaign_id", sa.Text, nullable=True),
        sa.Column("adset_id", sa.Text, nullable=True),
        sa.Column("ad_id", sa.Text, nullable=True),
        sa.Column("dimension_1", sa.Text, nullable=False),
        sa.Column("dimension_2", sa.Text, nullable=False),
        sa.Column("dimension_3", sa.Text, nullable=False),
        sa.Column("row", Json, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spend", Money, nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=True),
        sa.Column("clicks", sa.BigInteger, nullable=True),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.CheckConstraint(SPEND_LEVELS, name="ck_meta_raw_breakdowns_level"),
        sa.CheckConstraint(
            "breakdown IN ('age_gender', 'country', 'placement')", name="ck_meta_raw_breakdowns_breakdown"
        ),
    )
    op.create_index(
        "uq_meta_raw_breakdowns_key",
        "meta_raw_breakdowns",
        [
            "organization_id",
            "ad_account_id",
            "breakdown",
            "level",
            "date",
            *IDS,
            "dimension_1",
            "dimension_2",
            "dimension_3",
        ],
        unique=True,
    )
    for name, columns in BREAKDOWNS.items():
        table = f"meta_spend_by_{name}"
        op.create_table(
            table,
            sa.Column("id", BigId, primary_key=True, autoincrement=True),
            sa.Column("organization_id", sa.Text, nullable=False),
            sa.Column("provider", sa.Text, nullable=False),
            sa.Column("date", sa.Date, nullable=False),
            sa.Column("level", sa.Text, nullable=False),
            sa.Column("ad_account_id", sa.Text, nullable=False),
            sa.Column("campaign_id", sa.Text, nullable=True),
            sa.Column("adset_id", sa.Text, nullable=True),
            sa.Column("ad_id", sa.Text, nullable=True),
            *(sa.Column(column, sa.Text, nullable=False) for column in columns),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("spend", Money, nullable=False),
            sa.Column("impressions", sa.BigInteger, nullable=True),
            sa.Column("clicks", sa.BigInteger, nullable=True),
            sa.Column("created_at", Timestamp, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
            sa.CheckConstraint("provider IN ('INSTAGRAM', 'FACEBOOK')", name=f"ck_{table}_provider"),
            sa.CheckConstraint(SPEND_LEVELS, name=f"ck_{table}_level"),
        )
        op.create_index(f"ix_{table}_ad_account_id_date", table, ["ad_account_id", "date"])
        op.create_index(f"uq_{table}_key", table, ["organization_id", "date", "level", *IDS, *columns], unique=True)
    op.create_table(
        "meta_raw_reach",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("campaign_id", sa.Text, nullable=True),
        sa.Column("adset_id", sa.Text, nullable=True),
        sa.Column("ad_id", sa.Text, nullable=True),
        sa.Column("row", Json, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reach", sa.BigInteger, nullable=False),
        sa.Column("frequency", Ratio, nullable=False),
        sa.Column("impressions", sa.BigInteger, nullable=False),
        sa.Column("spend", Money, nullable=False),
        sa.Column("fetched_at", Timestamp, nullable=False),
        sa.CheckConstraint(INSIGHT_LEVELS, name="ck_meta_raw_reach_level"),
        sa.CheckConstraint("period IN ('week', 'month')", name="ck_meta_raw_reach_period"),
    )
    op.create_index(
        "uq_meta_raw_reach_key",
        "meta_raw_reach",
        ["organization_id", "ad_account_id", "period", "level", "period_start", *IDS],
        unique=True,
    )
    for period, start in REACH.items():
        table = f"meta_reach_{period}"
        op.create_table(
            table,
            sa.Column("organization_id", sa.Text, nullable=False),
            sa.Column("ad_account_id", sa.Text, nullable=False),
            sa.Column("level", sa.Text, nullable=False),
            sa.Column("campaign_id", sa.Text, nullable=True),
            sa.Column("adset_id", sa.Text, nullable=True),
            sa.Column("ad_id", sa.Text, nullable=True),
            sa.Column(start, sa.Date, nullable=False),
            sa.Column("period_end", sa.Date, nullable=False),
            sa.Column("currency", sa.String(3), nullable=False),
            sa.Column("reach", sa.BigInteger, nullable=False),
            sa.Column("frequency", Ratio, nullable=False),
            sa.Column("impressions", sa.BigInteger, nullable=False),
            sa.Column("spend", Money, nullable=False),
            sa.Column("updated_at", Timestamp, nullable=False),
            sa.CheckConstraint(INSIGHT_LEVELS, name=f"ck_{table}_level"),
        )
        op.create_index(
            f"uq_{table}_key", table, ["organization_id", "ad_account_id", "level", start, *IDS], unique=True
        )
    for name, query in views().items():
        op.execute(f"CREATE VIEW {name} AS {query}")
    comment_tables(
        only={*(f"meta_spend_by_{name}" for name in BREAKDOWNS), *(f"meta_reach_{period}" for period in REACH)}
    )
    comment_breakdown_and_reach_views()


def downgrade() -> None:
    for name in views():
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for period in REACH:
        op.drop_index(f"uq_meta_reach_{period}_key", table_name=f"meta_reach_{period}")
        op.drop_table(f"meta_reach_{period}")
    op.drop_index("uq_meta_raw_reach_key", table_name="meta_raw_reach")
    op.drop_table("meta_raw_reach")
    for name in BREAKDOWNS:
        table = f"meta_spend_by_{name}"
        op.drop_index(f"uq_{table}_key", table_name=table)
        op.drop_index(f"ix_{table}_ad_account_id_date", table_name=table)
        op.drop_table(table)
    op.drop_index("uq_meta_raw_breakdowns_key", table_name="meta_raw_breakdowns")
    op.drop_table("meta_raw_breakdowns")
    with op.batch_alter_table("meta_fetch_log") as batch:
        batch.drop_column("report")
