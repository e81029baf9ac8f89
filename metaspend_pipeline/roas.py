"""ROAS by campaign, ad set and ad: the product's rules, in exact decimals.

- Spend comes from `meta_spend_daily` rows of the matching level only, never summed across levels.
- A lead counts on the day it was created in its ad account's time zone (the day Meta gives its
  spend); a sale, and its revenue, count on its lead's day and in its lead's group.
- conversion_rate = sales / leads, avg_ticket = revenue / sales, roas = revenue / spend, each NULL
  where its denominator is 0; roas is also NULL when revenue is 0, as in the product's dashboard.
- A group's currency is its spend's (else its ad account's). Sales in another currency are not
  added in: the group's revenue, avg_ticket and roas are NULL and `revenue_currency_mismatch` is set.
- Groups with leads but no spend, and with spend but no leads, are both present.
- Everything is per organization: no lead, sale or spend of one organization meets another's.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa

from metaspend_pipeline.ingest import windows
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.raw import ad_account_info
from metaspend_pipeline.storage.schema import ROAS_GROUPS

CENT = Decimal("0.01")
RATIO = Decimal("0.000001")
LEVEL_OF_GROUP = {"campaign": "CAMPAIGN", "adset": "ADSET", "ad": "AD"}


@dataclass(frozen=True)
class Ratios:
    avg_ticket: Decimal | None
    conversion_rate: Decimal | None
    roas: Decimal | None


def ratios(leads: int, sales: int, revenue: Decimal | None, spend: Decimal) -> Ratios:
    """The dashboard's ratios from sums (never an average of ratios)."""
    conversion = (Decimal(sales) / Decimal(leads)).quantize(RATIO, ROUND_HALF_UP) if leads else None
    avg_ticket = (revenue / sales).quantize(CENT, ROUND_HALF_UP) if sales and revenue is not None else None
    roas = (revenue / spend).quantize(RATIO, ROUND_HALF_UP) if revenue and spend > 0 else None
    return Ratios(avg_ticket=avg_ticket, conversion_rate=conversion, roas=roas)


@dataclass
class GroupTotals:
    """Sums of one group on one day (or over a range, for the report)."""

    leads: int = 0
    sales: int = 0
    spend: Decimal = Decimal(0)
    spend_currencies: set[str] = field(default_factory=set)
    revenue: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fallback_currency: str | None = None

    def finish(self) -> tuple[str | None, Decimal | None, bool]:
        """(currency, revenue in it or None, mismatch) by the rules above."""
        currencies = set(self.spend_currencies)
        if len(currencies) > 1:
            return None, None, True
        currency = next(iter(currencies), None) or self.fallback_currency
        sale_currencies = set(self.revenue)
        if currency is None and len(sale_currencies) == 1:
            currency = next(iter(sale_currencies))
        mismatch = bool(sale_currencies - {currency}) if sale_currencies else False
        if mismatch:
            return currency, None, True
        return currency, self.revenue.get(currency, Decimal(0)).quantize(CENT) if currency else Decimal(0), False


@dataclass(frozen=True)
class RoasRow:
    organization_id: str
    date: dt.date
    group_id: str
    currency: str | None
    leads_count: int
    sales_count: int
    revenue: Decimal | None
    spend: Decimal
    avg_ticket: Decimal | None
    conversion_rate: Decimal | None
    roas: Decimal | None
    revenue_currency_mismatch: bool


def _local_date(moment: dt.datetime, zone: str | None) -> dt.date:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if not zone:
        return moment.astimezone(dt.UTC).date()
    return moment.astimezone(zoneinfo.ZoneInfo(zone)).date()


def compute(
    organization_id: str,
    group: str,
    spend_rows: Iterable[spend_store.SpendRow],
    leads: Sequence[roas_store.Lead],
    sales: Sequence[roas_store.Sale],
    account_of_lead: Callable[[roas_store.Lead], str | None],
    accounts: dict[str, tuple[str, str]],
    since: dt.date,
    until: dt.date,
) -> list[RoasRow]:
    """ROAS rows of one organization at one grouping, one per (day, group id) with leads or spend.

    `accounts` maps ad account -> (currency, time zone).
    """
    totals: dict[tuple[dt.date, str], GroupTotals] = defaultdict(GroupTotals)
    level = LEVEL_OF_GROUP[group]
    for row in spend_rows:
        if row.level != level or row.organization_id != organization_id:
            continue
        group_id = {"campaign": row.campaign_id, "adset": row.adset_id, "ad": row.ad_id}[group]
        if group_id is None:
            continue
        t = totals[(row.date, group_id)]
        t.spend += row.spend
        t.spend_currencies.add(row.currency)

    sales_by_lead: dict[str, list[roas_store.Sale]] = defaultdict(list)
    for sale in sales:
        sales_by_lead[sale.lead_id].append(sale)
    for lead in leads:
        group_id = {"campaign": lead.campaign_id, "adset": lead.adset_id, "ad": lead.ad_id}[group]
        if not group_id:
            continue
        account = account_of_lead(lead)
        currency, zone = accounts.get(account, (None, None)) if account else (None, None)
        day = _local_date(lead.created_at, zone)
        if not since <= day <= until:
            continue
        t = totals[(day, group_id)]
        t.leads += 1
        t.fallback_currency = t.fallback_currency or currency
        for sale in sales_by_lead.get(lead.id, ()):
            t.sales += 1
            t.revenue[sale.currency] += sale.amount

    rows = []
    for (day, group_id), t in sorted(totals.items()):
        currency, revenue, mismatch = t.finish()
        r = ratios(t.leads, t.sales, revenue, t.spend)
        rows.append(
            RoasRow(
                organization_id=organization_id,
                date=day,
                group_id=group_id,
                currency=currency,
                leads_count=t.leads,
                sales_count=t.sales,
                revenue=revenue,
                spend=t.spend.quantize(CENT),
                avg_ticket=r.avg_ticket,
                conversion_rate=r.conversion_rate,
                roas=r.roas,
                revenue_currency_mismatch=mismatch,
            )
        )
    return rows


@dataclass
class RoasReport:
    rows_by_group: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_by_day_group: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    mismatches_by_group: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def refresh_organization(
    engine: sa.Engine,
    organization_id: str,
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: RoasReport,
    groups: Sequence[str] = ROAS_GROUPS,
) -> None:
    """Recompute the organization's ROAS rows over [since, until], one transaction per window."""
    with engine.connect() as conn:
        group_accounts = spend_store.group_ad_accounts(conn, organization_id)
        own_accounts = roas_store.organization_ad_accounts(conn, organization_id)
        info = {a: (i.currency, i.timezone_name) for a, i in ad_account_info(conn).items()}
    sole_account = next(iter(own_accounts)) if len(own_accounts) == 1 else None

    def account_of_lead(lead: roas_store.Lead) -> str | None:
        for level, object_id in (("AD", lead.ad_id), ("ADSET", lead.adset_id), ("CAMPAIGN", lead.campaign_id)):
            if object_id and (level, object_id) in group_accounts:
                return group_accounts[(level, object_id)]
        return sole_account

    for start, end in windows(since, until, window_days):
        with engine.begin() as conn:
            window_from = dt.datetime.combine(start - dt.timedelta(days=1), dt.time(), dt.UTC)
            window_to = dt.datetime.combine(end + dt.timedelta(days=2), dt.time(), dt.UTC)
            leads = roas_store.leads_between(conn, organization_id, window_from, window_to)
            sales = roas_store.sales_of_leads_between(conn, organization_id, window_from, window_to)
            spend_rows = list(
                spend_store.iter_spend(conn, start, end, [organization_id], [LEVEL_OF_GROUP[g] for g in groups])
            )
            for group in groups:
                rows = compute(organization_id, group, spend_rows, leads, sales, account_of_lead, info, start, end)
                roas_store.replace_roas(conn, group, organization_id, start, end, rows)
                report.rows_by_group[group] += len(rows)
                report.mismatches_by_group[group] += sum(r.revenue_currency_mismatch for r in rows)
                for r in rows:
                    report.rows_by_day_group[(r.date, group)] += 1
