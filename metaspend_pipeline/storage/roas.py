"""Reads of the product's `lead` and `sale` tables, and the ROAS tables' writes and reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from metaspend_pipeline.storage.accounts import as_utc
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.raw import bulk_insert
from metaspend_pipeline.storage.schema import ROAS_TABLES, connected_account, lead, meta_spend_daily, sale

if TYPE_CHECKING:
    from metaspend_pipeline.roas import RoasRow


@dataclass(frozen=True)
class Lead:
    id: str
    created_at: dt.datetime
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None


@dataclass(frozen=True)
class Sale:
    lead_id: str
    amount: Decimal
    currency: str


def leads_between(conn: sa.Connection, organization_id: str, start: dt.datetime, end: dt.datetime) -> list[Lead]:
    """The organization's leads created in [start, end) (UTC)."""
    query = (
        sa.select(lead.c.id, lead.c.created_at, lead.c.campaign_id, lead.c.adset_id, lead.c.ad_id)
        .where(lead.c.organization_id == organization_id)
        .where(lead.c.created_at >= start)
        .where(lead.c.created_at < end)
    )
    return [Lead(r.id, as_utc(r.created_at), r.campaign_id, r.adset_id, r.ad_id) for r in conn.execute(query)]


def sales_of_leads_between(
    conn: sa.Connection, organization_id: str, start: dt.datetime, end: dt.datetime
) -> list[Sale]:
    """Sales of the organization's leads created in [start, end); a sale and its lead must share the
    organization, so one organization's sale can never count for another's lead."""
    query = (
        sa.select(sale.c.lead_id, sale.c.amount, sale.c.currency)
        .join(lead, sa.and_(lead.c.id == sale.c.lead_id, lead.c.organization_id == sale.c.organization_id))
        .where(sale.c.organization_id == organization_id)
        .where(lead.c.created_at >= start)
        .where(lead.c.created_at < end)
    )
    return [Sale(r.lead_id, r.amount, r.currency.upper()) for r in conn.execute(query)]


def organization_ad_accounts(conn: sa.Connection, organization_id: str) -> set[str]:
    """Every ad account the organization's connected accounts list, whatever their status."""
    out: set[str] = set()
    query = sa.select(connected_account.c.ad_accounts).where(connected_account.c.organization_id == organization_id)
    for (accounts,) in conn.execute(query):
        out.update(accounts or ())
    return out


def roas_organizations(conn: sa.Connection, since: dt.date, until: dt.date) -> list[str]:
    """Organizations ROAS is computed for: every Meta-connected one, and any with spend in the range."""
    connected = sa.select(connected_account.c.organization_id)
    spending = sa.select(meta_spend_daily.c.organization_id).where(meta_spend_daily.c.date.between(since, until))
    union = sa.union(connected, spending).subquery()
    return list(conn.execute(sa.select(union.c.organization_id).order_by(union.c.organization_id)).scalars())


def replace_roas(
    conn: sa.Connection, group: str, organization_id: str, since: dt.date, until: dt.date, rows: Iterable[RoasRow]
) -> int:
    """Replace the organization's rows of [since, until] in `meta_roas_by_<group>` (caller's transaction)."""
    table = ROAS_TABLES[group]
    conn.execute(
        table.delete().where(table.c.organization_id == organization_id).where(table.c.date.between(since, until))
    )
    now = utcnow()
    return bulk_insert(
        conn,
        table,
        (
            {
                "organization_id": r.organization_id,
                "date": r.date,
                f"{group}_id": r.group_id,
                "currency": r.currency,
                "leads_count": r.leads_count,
                "sales_count": r.sales_count,
                "revenue": r.revenue,
                "spend": r.spend,
                "avg_ticket": r.avg_ticket,
                "conversion_rate": r.conversion_rate,
                "roas": r.roas,
                "revenue_currency_mismatch": r.revenue_currency_mismatch,
                "updated_at": now,
            }
            for r in rows
        ),
    )


def iter_roas(
    conn: sa.Connection,
    group: str,
    since: dt.date,
    until: dt.date,
    organizations: Sequence[str] | None = None,
    only_mismatches: bool = False,
) -> Iterator[sa.Row]:
    table = ROAS_TABLES[group]
    query = sa.select(table).where(table.c.date.between(since, until))
    if organizations is not None:
        query = query.where(table.c.organization_id.in_(list(organizations)))
    if only_mismatches:
        query = query.where(table.c.revenue_currency_mismatch.is_(True))
    yield from conn.execute(query.order_by(table.c.organization_id, table.c.date, table.c[f"{group}_id"]))
