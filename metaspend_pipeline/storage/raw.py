"""Meta's raw insight rows, ad account metadata and the fetch log: writes and reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.db import is_postgres, utcnow
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.schema import meta_ad_account, meta_fetch_log, meta_raw_insights

RAW_COLUMNS = (
    "organization_id",
    "provider",
    "ad_account_id",
    "level",
    "date",
    "row",
    "fetched_at",
    "campaign_id",
    "adset_id",
    "ad_id",
    "currency",
    "spend",
    "impressions",
    "clicks",
)


def replace_raw_insights(
    conn: sa.Connection,
    *,
    organization_id: str,
    provider: str,
    ad_account_id: str,
    level: str,
    since: dt.date,
    until: dt.date,
    rows: Iterable[InsightRow],
    fetched_at: dt.datetime,
) -> int:
    """Replace the (organization, ad account, level) rows of [since, until] with `rows`.

    Call inside a transaction: readers see the old rows or the new ones, never a mix. The
    organization's lock makes an overlapping writer wait, and the delete is a range of the
    unique key's index, so the cost is linear in the rows whatever the table's statistics.
    """
    lock_organization(conn, organization_id)
    t = meta_raw_insights
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id == ad_account_id)
        .where(t.c.level == level)
        .where(t.c.date.between(since, until))
    )
    return load_rows(
        conn,
        t,
        RAW_COLUMNS,
        (
            (
                organization_id,
                provider,
                ad_account_id,
                level,
                r.date,
                dict(r.raw),
                fetched_at,
                r.campaign_id,
                r.adset_id,
                r.ad_id,
                r.currency,
                r.spend,
                r.impressions,
                r.clicks,
            )
            for r in rows
        ),
    )


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
    report: str = "spend"  # what was fetched: spend (meta_raw_insights), breakdowns or reach


def log_fetch(conn: sa.Connection, run_id: str, outcome: FetchOutcome) -> None:
    conn.execute(meta_fetch_log.insert().values(run_id=run_id, fetched_at=utcnow(), **dataclasses.asdict(outcome)))


def fetches_of_run(conn: sa.Connection, run_id: str, report: str | None = "spend") -> list[FetchOutcome]:
    """The run's fetches of `report` (spend: meta_raw_insights'; None: every report), in the order they
    were logged."""
    t = meta_fetch_log
    names = [f.name for f in dataclasses.fields(FetchOutcome)]
    query = sa.select(*[t.c[name] for name in names]).where(t.c.run_id == run_id).order_by(t.c.id)
    if report is not None:
        query = query.where(t.c.report == report)
    return [FetchOutcome(**r._mapping) for r in conn.execute(query)]
