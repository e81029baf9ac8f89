"""Campaigns, ad sets and ads (`meta_campaign`, `meta_adset`, `meta_ad`): upserts and reads.

An upsert is one INSERT ... ON CONFLICT (organization_id, id) DO UPDATE statement, compiled once
and executed for a batch of rows at a time (executemany: SQLAlchemy sends PostgreSQL multi-row
VALUES pages, SQLite runs it natively): linear in the number of objects, and two runs writing the
same objects at once end with one row each. Rows are never deleted: an object Meta stops listing keeps
its last known name, and `last_seen_at` says when that was.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from metaspend_pipeline.meta.models import MetaObject
from metaspend_pipeline.storage.accounts import as_utc
from metaspend_pipeline.storage.schema import NAMED_ROAS_VIEWS, OBJECT_KINDS, OBJECT_TABLES, meta_ad, meta_raw_insights

BATCH_ROWS = 1000
_PARENTS = {"campaign": ("objective",), "adset": ("campaign_id",), "ad": ("campaign_id", "adset_id")}


def _row(organization_id: str, o: MetaObject, seen_at: dt.datetime) -> dict[str, Any]:
    row = {
        "organization_id": organization_id,
        "ad_account_id": o.ad_account_id,
        "id": o.id,
        "name": o.name,
        "status": o.status,
        "effective_status": o.effective_status,
        # stored in UTC: SQLite keeps no offset, and Meta's are the ad account's zone
        "created_time": o.created_time.astimezone(dt.UTC) if o.created_time else None,
        "updated_time": o.updated_time.astimezone(dt.UTC) if o.updated_time else None,
        "last_seen_at": seen_at.astimezone(dt.UTC),
    }
    for name in _PARENTS[o.kind]:
        row[name] = getattr(o, name)
    return row


def upsert_objects(
    conn: sa.Connection, organization_id: str, kind: str, objects: Iterable[MetaObject], seen_at: dt.datetime
) -> int:
    """Insert or update the organization's objects of `kind`, all marked seen at `seen_at`."""
    table = OBJECT_TABLES[kind]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    updated = {c.name: statement.excluded[c.name] for c in table.c if c.name not in ("organization_id", "id")}
    statement = statement.on_conflict_do_update(index_elements=["organization_id", "id"], set_=updated)
    count = 0
    iterator = iter(objects)
    while batch := list(itertools.islice(iterator, BATCH_ROWS)):
        # an object listed twice (paging while the account changes) would fail PostgreSQL's ON CONFLICT
        rows = {o.id: _row(organization_id, o, seen_at) for o in batch}
        conn.execute(statement, list(rows.values()))
        count += len(batch)
    return count


def last_refreshed(conn: sa.Connection, organization_id: str, ad_account_id: str) -> dt.datetime | None:
    """When every kind of the ad account's objects was last fetched (the oldest of the three);
    None when a kind has never been stored."""
    oldest: dt.datetime | None = None
    for kind in OBJECT_KINDS:
        table = OBJECT_TABLES[kind]
        seen = conn.execute(
            sa.select(sa.func.max(table.c.last_seen_at))
            .where(table.c.organization_id == organization_id)
            .where(table.c.ad_account_id == ad_account_id)
        ).scalar()
        if seen is None:
            return None
        seen = as_utc(seen)
        oldest = seen if oldest is None else min(oldest, seen)
    return oldest


def unknown_ads(conn: sa.Connection, organization_id: str, ad_account_id: str, since: dt.date, until: dt.date) -> int:
    """How many ads with insights in [since, until] are not in `meta_ad` (new since the last fetch)."""
    raw = meta_raw_insights
    ad_id = raw.c.ad_id
    known = sa.and_(meta_ad.c.organization_id == raw.c.organization_id, meta_ad.c.id == ad_id)
    return conn.execute(
        sa.select(sa.func.count(sa.distinct(ad_id)))
        .select_from(raw.outerjoin(meta_ad, known))
        .where(raw.c.organization_id == organization_id)
        .where(raw.c.ad_account_id == ad_account_id)
        .where(raw.c.level == "AD")
        .where(raw.c.date.between(since, until))
        .where(meta_ad.c.id.is_(None))
    ).scalar_one()


# The names each ROAS view adds, per grouping level: the level's own, then its parents'.
NAME_COLUMNS = {
    "campaign": ("campaign_name",),
    "adset": ("adset_name", "campaign_id", "campaign_name"),
    "ad": ("ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name"),
}


def names_in_roas(
    conn: sa.Connection, organization_id: str, group: str, since: dt.date, until: dt.date
) -> dict[str, dict[str, str | None]]:
    """The names (and parent ids) of every object with ROAS rows in [since, until], read through
    the `meta_roas_by_<group>_named` view: object id -> {column: value}."""
    columns: Sequence[str] = NAME_COLUMNS[group]
    view = sa.table(
        NAMED_ROAS_VIEWS[group],
        sa.column("organization_id"),
        sa.column("date", sa.Date),
        sa.column(f"{group}_id"),
        *(sa.column(c) for c in columns),
    )
    query = (
        sa.select(view.c[f"{group}_id"], *(view.c[c] for c in columns))
        .distinct()
        .where(view.c.organization_id == organization_id)
        .where(view.c.date.between(since, until))
    )
    return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in conn.execute(query)}
