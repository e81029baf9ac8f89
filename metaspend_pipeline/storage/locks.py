"""Writers of an organization's rows take its lock first, so that overlapping runs queue; and the
plans of their joins stay linear.

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
    lock(conn, f"metaspend:organization:{organization_id}")


def lock(conn: sa.Connection, key: str) -> None:
    """Hold the write lock named `key` (e.g. a table shared by every organization) until the caller's
    transaction ends."""
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})


def linear_plans(conn: sa.Connection) -> None:
    """Hash joins only, for the rest of the caller's transaction (PostgreSQL).

    Right after a bulk load the planner has no statistics and takes a scope of 80,000 rows for
    one row. It then picks a nested loop, which compares every row with every other, or a merge
    join on the one column an index already sorts (the day), which compares every row of a day
    with every other row of that day: minutes instead of seconds, measured. A hash join hashes
    every equality of the join, so it is linear whatever the statistics say; every join of the
    write path is bounded by its scope on both sides, so it never reads more than that.
    """
    if is_postgres(conn):
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
