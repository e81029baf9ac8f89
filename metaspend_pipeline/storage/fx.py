"""`fx_rates_daily`'s writes and reads, and the currencies the pipeline needs rates for."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.currency import EUR
from metaspend_pipeline.storage.accounts import reporting_currencies
from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.locks import lock
from metaspend_pipeline.storage.roas import roas_organizations
from metaspend_pipeline.storage.schema import (
    connected_account,
    fx_rates_daily,
    lead,
    meta_ad_account,
    meta_spend_daily,
    sale,
)

LOCK_KEY = "metaspend:fx_rates_daily"


@dataclass(frozen=True)
class FxRate:
    """One row of `fx_rates_daily`: units of `currency` for one euro on `date`, as published on `ecb_date`."""

    date: dt.date
    currency: str
    rate: Decimal
    ecb_date: dt.date


def replace_rates(conn: sa.Connection, since: dt.date, until: dt.date, rows: Iterable[FxRate]) -> int:
    """Replace every rate of [since, until], in the caller's transaction, under the table's lock
    (an overlapping run waits, then replaces)."""
    lock(conn, LOCK_KEY)
    conn.execute(fx_rates_daily.delete().where(fx_rates_daily.c.date.between(since, until)))
    now = utcnow()
    return load_rows(
        conn,
        fx_rates_daily,
        ("date", "currency", "rate", "ecb_date", "fetched_at"),
        ((r.date, r.currency, r.rate, r.ecb_date, now) for r in rows),
    )


def rates(conn: sa.Connection, since: dt.date, until: dt.date) -> dict[tuple[dt.date, str], Decimal]:
    """{(day, currency): units per euro} over [since, until]."""
    t = fx_rates_daily
    query = sa.select(t.c.date, t.c.currency, t.c.rate).where(t.c.date.between(since, until))
    return {(day, currency): rate for day, currency, rate in conn.execute(query)}


def needed_currencies(conn: sa.Connection, since: dt.date, until: dt.date) -> dict[str, list[str]]:
    """{currency: who needs it} for [since, until]: the rates an organization's reporting-currency
    columns convert with. Its currencies are its connected ad accounts', its spend's and its sales'
    (by their lead's day, as ROAS counts them) in the range; each one other than its reporting
    currency is needed, and then the reporting currency too. An organization whose amounts are all
    in its reporting currency needs no rate, and EUR never does (the rates are per euro)."""
    has: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))  # organization -> currency -> why
    owners: dict[str, set[str]] = defaultdict(set)
    connected = connected_account.c.status.in_(["CONNECTED", "NEEDS_REAUTH"])  # as `connected_organizations`
    for organization_id, accounts in conn.execute(
        sa.select(connected_account.c.organization_id, connected_account.c.ad_accounts).where(connected)
    ):
        for account in accounts or ():
            owners[account].add(organization_id)
    for account, currency in conn.execute(sa.select(meta_ad_account.c.ad_account_id, meta_ad_account.c.currency)):
        for organization_id in owners.get(account, ()):
            has[organization_id][currency.upper()].add(f"organization {organization_id} (ad account {account})")
    s = meta_spend_daily
    for organization_id, account, currency in conn.execute(
        sa.select(s.c.organization_id, s.c.ad_account_id, s.c.currency).where(s.c.date.between(since, until)).distinct()
    ):
        has[organization_id][currency.upper()].add(f"organization {organization_id} (ad account {account})")
    # a sale counts on its lead's day, in the ad account's time zone: leads created a day around the range
    first = dt.datetime.combine(since - dt.timedelta(days=1), dt.time(), dt.UTC)
    last = dt.datetime.combine(until + dt.timedelta(days=2), dt.time(), dt.UTC)
    for organization_id, currency in conn.execute(
        sa.select(sale.c.organization_id, sa.func.upper(sale.c.currency))
        .join(lead, sa.and_(lead.c.id == sale.c.lead_id, lead.c.organization_id == sale.c.organization_id))
        .where(lead.c.created_at >= first, lead.c.created_at < last)
        .distinct()
    ):
        has[organization_id][currency].add(f"organization {organization_id} (sales)")
    needs: dict[str, set[str]] = defaultdict(set)
    for organization_id, reporting in reporting_currencies(conn, roas_organizations(conn)).items():
        converted = {c: who for c, who in has.get(organization_id, {}).items() if c != reporting}
        if not converted:
            continue
        for currency, who in converted.items():
            needs[currency] |= who
        needs[reporting].add(f"organization {organization_id} (reporting currency)")
    needs.pop(EUR, None)
    return {currency: sorted(who) for currency, who in sorted(needs.items())}
