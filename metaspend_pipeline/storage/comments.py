"""COMMENT ON the reporting tables, views and columns (PostgreSQL only), for the migrations.

The text lives in one place, `storage/schema.py` (`comment=` on tables and columns). A migration
applies it to what exists at that point of the history: a column a later revision adds is
commented by that revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from metaspend_pipeline.storage.schema import (
    NAMED_BREAKDOWN_AND_REACH_VIEWS,
    NAMED_ROAS_VIEWS,
    NAMED_VIEW_COLUMN_COMMENTS,
    metadata,
    named_view_comments,
)


def _postgres() -> sa.Connection | None:
    bind = op.get_bind()
    return bind if bind.dialect.name == "postgresql" else None


def comment_tables(only: set[str] | None = None, drop: bool = False) -> None:
    """Apply (or with `drop`, remove) the COMMENTs of the commented tables that exist, and of their
    existing columns; `only` limits it to those tables."""
    bind = _postgres()
    if bind is None:
        return
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing or not table.comment or (only is not None and table.name not in only):
            continue
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        if drop:
            op.drop_table_comment(table.name)
        else:
            op.create_table_comment(table.name, table.comment)
        for column in table.columns:
            if column.comment and column.name in columns:
                if drop:
                    op.alter_column(table.name, column.name, comment=None, existing_comment=column.comment)
                else:
                    op.alter_column(table.name, column.name, comment=column.comment)


def comment_named_views() -> None:
    """The COMMENTs of the `meta_roas_by_<group>_named` views and of each of their columns."""
    bind = _postgres()
    if bind is None:
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


def comment_breakdown_and_reach_views() -> None:
    """The COMMENTs of the named breakdown and reach views (migration 0008) and of their columns: the
    base table's, and the object names'."""
    bind = _postgres()
    if bind is None:
        return
    inspector = sa.inspect(bind)
    views = set(inspector.get_view_names())
    for view, (table, extra) in NAMED_BREAKDOWN_AND_REACH_VIEWS.items():
        if view not in views:
            continue
        bind.exec_driver_sql(f'COMMENT ON VIEW "{view}" IS {_literal(f"{table.comment} {extra}")}')
        for column in (c["name"] for c in inspector.get_columns(view)):
            text = table.c[column].comment if column in table.c else NAMED_VIEW_COLUMN_COMMENTS.get(column)
            if text:
                bind.exec_driver_sql(f'COMMENT ON COLUMN "{view}"."{column}" IS {_literal(text)}')
