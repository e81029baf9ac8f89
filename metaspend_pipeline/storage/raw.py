"""Meta's raw insight rows, ad account metadata and the fetch log: writes and reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage.db import is_postgres, utcnow
from metaspend_pipeline.storage.schema import meta_ad_account, meta_fetch_log, meta_raw_insights

BATCH_ROWS = 2000
MAX_PARAMETERS = 30_000  # under SQLite's 32,766 bound parameters per statement (PostgreSQL: 65,535)


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Multi-row INSERT ... VALUES (...), (...), ... in batches: one statement per batch, never
    one per row (a driver's executemany may still send a statement per row)."""
    count = 0
    iterator = iter(rows)
    per_batch = BATCH_ROWS
    while batch := list(itertools.islice(iterator, per_batch)):
        per_batch = max(1, min(BATCH_ROWS, MAX_PARAMETERS // max(1, len(batch[0]))))
        if len(batch) > per_batch:  # the first batch, before the row width was known
            rest = batch[per_batch:]
            batch = batch[:per_batch]
            iterator = itertools.chain(rest, iterator)
        conn.execute(table.insert().values(batch))
        count += len(batch)
    return count


def replace_raw_insights(
    conn: sa.Connection,
    *,
    organization_id: str,
    provider: str,
    ad_account_id: str,
    level: str,
    since: dt.date,
    until: dt.date,
    rows: Iterable[tuple[dt.date, Mapping[str, Any]]],
    fetched_at: dt.datetime,
) -> int:
    """Replace the (organization, ad account, level) rows of [since, until] with `rows`.

    Call inside a transaction: readers see the old rows or the new ones, never a mix.
    """
    t = meta_raw_insights
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id == ad_account_id)
        .where(t.c.level == level)
        .where(t.c.date.between(since, until))
    )
    return bulk_insert(
        conn,
        t,
        (
            {
                "organization_id": organization_id,
                "provider": provider,
                "ad_account_id": ad_account_id,
                "level": level,
                "date": day,
                "row": dict(raw),
                "fetched_at": fetched_at,
            }
            for day, raw in rows
        ),
    )


@dataclass(frozen=True)
class RawRow:
    provider: str
    ad_account_id: str
    level: str
    date: dt.date
    row: Mapping[str, Any]


def iter_raw_insights(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str] | None,
    levels: Sequence[str],
    since: dt.date,
    until: dt.date,
) -> Iterator[RawRow]:
    """Raw rows of an organization, read in batches by id.

    Each batch is read whole before it is yielded, so the caller may write on the same
    connection (into a staging table) while it iterates.
    """
    t = meta_raw_insights
    query = (
        sa.select(t.c.id, t.c.provider, t.c.ad_account_id, t.c.level, t.c.date, t.c.row)
        .where(t.c.organization_id == organization_id)
        .where(t.c.level.in_(list(levels)))
        .where(t.c.date.between(since, until))
        .order_by(t.c.id)
        .limit(BATCH_ROWS)
    )
    if ad_account_ids is not None:
        query = query.where(t.c.ad_account_id.in_(list(ad_account_ids)))
    last_id = 0
    while batch := conn.execute(query.where(t.c.id > last_id)).all():
        for r in batch:
            yield RawRow(r.provider, r.ad_account_id, r.level, r.date, r.row)
        last_id = batch[-1].id


def raw_scopes(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Organizations and their ad accounts with raw rows in [since, until]."""
    t = meta_raw_insights
    query = (
        sa.select(t.c.organization_id, t.c.ad_account_id)
        .where(t.c.date.between(since, until))
        .distinct()
        .order_by(t.c.organization_id, t.c.ad_account_id)
    )
    if organizations is not None:
        query = query.where(t.c.organization_id.in_(list(organizations)))
    out: dict[str, list[str]] = {}
    for org, account in conn.execute(query):
        out.setdefault(org, []).append(account)
    return out


def upsert_ad_account(
    conn: sa.Connection,
    *,
    ad_account_id: str,
    name: str | None,
    currency: str,
    timezone_name: str,
    timezone_offset_hours_utc: Decimal | None,
) -> None:
    values = {
        "ad_account_id": ad_account_id,
        "name": name,
        "currency": currency,
        "timezone_name": timezone_name,
        "timezone_offset_hours_utc": timezone_offset_hours_utc,
        "updated_at": utcnow(),
    }
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(meta_ad_account).values(**values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[meta_ad_account.c.ad_account_id],
            set_={k: statement.excluded[k] for k in values if k != "ad_account_id"},
        )
    )


@dataclass(frozen=True)
class AdAccountInfo:
    ad_account_id: str
    currency: str
    timezone_name: str


def ad_account_info(conn: sa.Connection) -> dict[str, AdAccountInfo]:
    t = meta_ad_account
    return {
        r.ad_account_id: AdAccountInfo(r.ad_account_id, r.currency, r.timezone_name)
        for r in conn.execute(sa.select(t.c.ad_account_id, t.c.currency, t.c.timezone_name))
    }


@dataclass(frozen=True)
class FetchOutcome:
    organization_id: str
    ad_account_id: str | None
    since: dt.date
    until: dt.date
    status: str
    error: str | None = None
    rows: int = 0
    requests: int = 0
    throttle_wait_seconds: float = 0.0


def log_fetch(conn: sa.Connection, run_id: str, outcome: FetchOutcome) -> None:
    conn.execute(meta_fetch_log.insert().values(run_id=run_id, fetched_at=utcnow(), **dataclasses.asdict(outcome)))


def fetches_of_run(conn: sa.Connection, run_id: str) -> list[FetchOutcome]:
    t = meta_fetch_log
    names = [f.name for f in dataclasses.fields(FetchOutcome)]
    query = sa.select(*[t.c[name] for name in names]).where(t.c.run_id == run_id).order_by(t.c.id)
    return [FetchOutcome(**r._mapping) for r in conn.execute(query)]
