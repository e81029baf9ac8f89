"""COMMENT ON the reporting tables and their columns, for BI users (PostgreSQL only).

The text lives in one place, `storage/schema.py` (`comment=` on the tables and columns); this
revision applies it to every commented table and column that exists. SQLite has no comments. A
table or column added by a later revision carries its own `comment=` (the comments test checks
them all), applied by that revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from metaspend_pipeline.storage.comments import comment_named_views, comment_tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    comment_tables()
    comment_named_views()


def downgrade() -> None:
    comment_tables(drop=True)
