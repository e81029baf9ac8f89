"""When each ad account was first connected to its organization (`connected_ad_account`); and the
reporting columns' comments, which now say that they are rounded to the reporting currency's minor
units and NULL without a rate.

An ad account added to an organization later (a reconnection with more ad accounts, or a second
provider) is expected to be loaded from then on, not on the days before. Existing connections are
recorded at their connected account's creation time: the earliest a listed ad account can have been
connected.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.comments import comment_tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "connected_ad_account",
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("ad_account_id", sa.Text, nullable=False),
        sa.Column("first_connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "ad_account_id", name="pk_connected_ad_account"),
    )
    accounts = sa.table(
        "connected_account",
        sa.column("organization_id", sa.Text),
        sa.column("ad_accounts", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    first: dict[tuple[str, str], object] = {}
    for organization_id, ad_accounts, created_at in op.get_bind().execute(sa.select(accounts)):
        for ad_account_id in ad_accounts or ():
            key = (organization_id, ad_account_id)
            first[key] = min(first.get(key, created_at), created_at)  # type: ignore[type-var]
    if first:
        op.bulk_insert(
            table,
            [{"organization_id": o, "ad_account_id": a, "first_connected_at": at} for (o, a), at in first.items()],
        )
    comment_tables(only={f"meta_roas_by_{group}" for group in ("campaign", "adset", "ad")})


def downgrade() -> None:
    op.drop_table("connected_ad_account")
