"""Writers of an organization's rows take its lock first, so that overlapping runs queue.

Under READ COMMITTED, two transactions that each replace the same scope (delete, then insert)
would both insert. On PostgreSQL every write transaction of an organization's raw rows, daily
spend and ROAS first takes a transaction-scoped advisory lock on the organization; the second
writer waits for the first to commit and then replaces its rows. SQLite needs nothing more: the
engine begins every transaction with BEGIN IMMEDIATE, one writer at a time.
"""

from __future__ import annotations

import sqlalchemy as sa

from metaspend_pipeline.storage.db import is_postgres


def lock_organization(conn: sa.Connection, organization_id: str) -> None:
    """Hold the organization's write lock until the caller's transaction ends."""
    if is_postgres(conn):
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"metaspend:organization:{organization_id}"},
        )
