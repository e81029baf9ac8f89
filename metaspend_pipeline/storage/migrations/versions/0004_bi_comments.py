"""COMMENT ON the reporting tables and their columns, for BI users (PostgreSQL only).

The text lives in one place, `storage/schema.py` (`comment=` on the tables and columns); this
revision applies it to every commented table that exists. SQLite has no comments. A table or
column added by a later revision carries its own `comment=` (the comments test checks them all).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.schema import metadata

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def _commented_tables() -> list[sa.Table]:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return []
    existing = set(sa.inspect(bind).get_table_names())
    return [t for t in metadata.sorted_tables if t.name in existing and t.comment]


def upgrade() -> None:
    for table in _commented_tables():
        op.create_table_comment(table.name, table.comment)
        for column in table.columns:
            if column.comment:
                op.alter_column(table.name, column.name, comment=column.comment)


def downgrade() -> None:
    for table in _commented_tables():
        op.drop_table_comment(table.name)
        for column in table.columns:
            if column.comment:
                op.alter_column(table.name, column.name, comment=None, existing_comment=column.comment)
