"""Names and attributes of campaigns, ad sets and ads; ROAS views with those names.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
KINDS = ("campaign", "adset", "ad")
_METRICS = """r.currency, r.leads_count, r.sales_count, r.revenue, r.spend, r.avg_ticket,
    r.conversion_rate, r.roas, r.revenue_currency_mismatch, r.updated_at"""
_CAMPAIGN = """c.name AS campaign_name, c.status AS campaign_status,
    c.effective_status AS campaign_effective_status, c.objective"""
_ADSET = """s.name AS adset_name, s.status AS adset_status, s.effective_status AS adset_effective_status"""
_AD = """a.name AS ad_name, a.status AS ad_status, a.effective_status AS ad_effective_status"""
# Plain SQL that SQLite and PostgreSQL both run. LEFT JOINs: a ROAS row whose object was never
# fetched keeps its numbers, with NULL names.
VIEWS = {
    "meta_roas_by_campaign_named": f"""
SELECT r.organization_id, r.date, c.ad_account_id, r.campaign_id, {_CAMPAIGN}, {_METRICS}
FROM meta_roas_by_campaign r
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = r.campaign_id""",
    "meta_roas_by_adset_named": f"""
SELECT r.organization_id, r.date, s.ad_account_id, r.adset_id, {_ADSET}, s.campaign_id, {_CAMPAIGN}, {_METRICS}
FROM meta_roas_by_adset r
LEFT JOIN meta_adset s ON s.organization_id = r.organization_id AND s.id = r.adset_id
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = s.campaign_id""",
    "meta_roas_by_ad_named": f"""
SELECT r.organization_id, r.date, a.ad_account_id, r.ad_id, {_AD}, a.adset_id, {_ADSET}, a.campaign_id, {_CAMPAIGN},
    {_METRICS}
FROM meta_roas_by_ad r
LEFT JOIN meta_ad a ON a.organization_id = r.organization_id AND a.id = r.ad_id
LEFT JOIN meta_adset s ON s.organization_id = r.organization_id AND s.id = a.adset_id
LEFT JOIN meta_campaign c ON c.organization_id = r.organization_id AND c.id = a.campaign_id""",
}


def upgrade() -> None:
    parents = {
        "campaign": [sa.Column("objective", sa.Text, nullable=True)],
        "adset": [sa.Column("campaign_id", sa.Text, nullable=False)],
        "ad": [sa.Column("campaign_id", sa.Text, nullable=False), sa.Column("adset_id", sa.Text, nullable=False)],
    }
    for kind in KINDS:
        op.create_table(
            f"meta_{kind}",
            sa.Column("organization_id", sa.Text, nullable=False),
            sa.Column("ad_account_id", sa.Text, nullable=False),
            sa.Column("id", sa.Text, nullable=False),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("effective_status", sa.Text, nullable=False),
            *parents[kind],
            sa.Column("created_time", Timestamp, nullable=True),
            sa.Column("updated_time", Timestamp, nullable=True),
            sa.Column("last_seen_at", Timestamp, nullable=False),
            sa.PrimaryKeyConstraint("organization_id", "id", name=f"pk_meta_{kind}"),
        )
        op.create_index(
            f"ix_meta_{kind}_organization_id_ad_account_id", f"meta_{kind}", ["organization_id", "ad_account_id"]
        )
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for kind in reversed(KINDS):
        op.drop_table(f"meta_{kind}")
