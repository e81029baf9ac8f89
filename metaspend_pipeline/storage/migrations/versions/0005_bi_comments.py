"""COMMENT ON the reporting tables and their columns, for BI users (PostgreSQL only).

The text lives in one place, `storage/schema.py` (`comment=` on the tables and columns); this
revision applies it to every commented table that exists. SQLite has no comments. A table or
column added by a later revision carries its own `comment=` (the comments test checks them all).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.schema import NAMED_ROAS_VIEWS, metadata, named_view_comments

revision = "0005"
down_revision = "0004"
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
    _comment_views()


def _comment_views() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    inspector = sa.inspect(bind)
    views = set(inspector.get_view_names())
    for group, view in NAMED_ROAS_VIEWS.items():
        if view not in views:
            continue
        columns = [c["name"] for c in inspector.get_columns(view)]
        comment, by_column = named_view_comments(group, columns)
        # COMMENT takes no parameters: the texts are ours, quoted as SQL string literals
        bind.exec_driver_sql(f'COMMENT ON VIEW "{view}" IS {_literal(comment)}')
        for column, text in by_column.items():
            bind.exec_driver_sql(f'COMMENT ON COLUMN "{view}"."{column}" IS {_literal(text)}')


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def downgrade() -> None:
    for table in _commented_tables():
        op.drop_table_comment(table.name)
        for column in table.columns:
            if column.comment:
                op.alter_column(table.name, column.name, comment=None, existing_comment=column.comment)
