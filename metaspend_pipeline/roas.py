"""ROAS by campaign, ad set and ad: the product's rules, in exact decimals.

- Spend comes from `meta_spend_daily` rows of the matching level only, never summed across levels.
- A lead counts on the day it was created in its ad account's time zone (the day Meta gives its
  spend); a sale, and its revenue, count on its lead's day and in its lead's group.
- conversion_rate = sales / leads, avg_ticket = revenue / sales, roas = revenue / spend, each NULL
  where its denominator is 0; roas only when both revenue and spend are above 0 (as in the
  product's dashboard: no ROAS of 0, and no negative ROAS from refunds).
- Rounding is explicit and the same everywhere: ratios to 6 decimals and money to 2, half up
  (`ROUND_HALF_UP`), from exact sums; never an average of ratios.
- A group's currency is its spend's (else its ad account's). Sales in another currency are not
  added in: the group's revenue, avg_ticket and roas are NULL and `revenue_currency_mismatch` is set.
- Groups with leads but no spend, and with spend but no leads, are both present.
- Everything is per organization: no lead, sale or spend of one organization meets another's.
- The reporting columns (`reporting_currency`, `spend_reporting`, `revenue_reporting`,
  `roas_reporting`) are in the organization's reporting currency: each currency's spend and each
  sale currency's revenue of the (day, group) is converted at that day's ECB rate
  (`fx_rates_daily`) and rounded half up to the reporting currency's minor units (0 for JPY, 2 for
  USD), then summed; roas_reporting follows `roas_of`. Where a needed rate is missing, the
  reporting amount that needs it (and roas_reporting) is NULL on that row alone, and the rest of
  the organization's ROAS is written: the account-currency columns and Meta's never need a rate.

Meta's view beside the CRM's: meta_purchases and meta_purchase_value are Meta's purchases of the
day and group under the ad account's own attribution setting (`meta_conversions_daily`, window
`default`, one action type per object: omni_purchase, else purchase, else
offsite_conversion.fb_pixel_purchase); meta_roas = meta_purchase_value / spend by the roas rules.

The sums are SQL (GROUP BY in the database, exact on both backends, see `storage.roas`); four
sorted streams (spend, leads, sales, Meta's purchases per day and group) are merged here one group at a time, so
memory does not grow with the rows, and only the run's window of days is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import pickle
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa

from metaspend_pipeline import fx
from metaspend_pipeline.currency import minor_units
from metaspend_pipeline.errors import ORGANIZATION_ERRORS, MetaspendError
from metaspend_pipeline.ingest import windows
from metaspend_pipeline.redaction import get_logger, redact
from metaspend_pipeline.storage import fx as fx_store
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.accounts import reporting_currency
from metaspend_pipeline.storage.locks import linear_plans, lock_organization
from metaspend_pipeline.storage.roas import RoasRow
from metaspend_pipeline.storage.schema import ROAS_GROUPS

CENT = Decimal("0.01")
RATIO = Decimal("0.000001")
SPOOL_MEMORY_BYTES = 4 * 1024 * 1024

log = get_logger(__name__)


@dataclass(frozen=True)
class Ratios:
    avg_ticket: Decimal | None
    conversion_rate: Decimal | None
    roas: Decimal | None


def roas_of(revenue: Decimal | None, spend: Decimal) -> Decimal | None:
    """revenue / spend, only where both are above 0 (no ROAS of 0, no negative ROAS from refunds)."""
    if revenue is not None and revenue > 0 and spend > 0:
        return (revenue / spend).quantize(RATIO, ROUND_HALF_UP)
    return None


def ratios(leads: int, sales: int, revenue: Decimal | None, spend: Decimal) -> Ratios:
    """The dashboard's ratios from sums (never an average of ratios)."""
    conversion = (Decimal(sales) / Decimal(leads)).quantize(RATIO, ROUND_HALF_UP) if leads else None
    avg_ticket = (revenue / sales).quantize(CENT, ROUND_HALF_UP) if sales and revenue is not None else None
    return Ratios(avg_ticket=avg_ticket, conversion_rate=conversion, roas=roas_of(revenue, spend))


@dataclass
class GroupTotals:
    """Sums of one group on one day (or over a range, for the report)."""

    leads: int = 0
    sales: int = 0
    spend: Decimal = Decimal(0)
    spend_currencies: set[str] = field(default_factory=set)
    spend_by_currency: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    revenue: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fallback_currency: str | None = None
    meta_purchases: int | None = None
    meta_purchase_value: dict[str, Decimal] = field(default_factory=dict)

    def finish(self) -> tuple[str | None, Decimal | None, bool]:
        """(currency, revenue in it or None, mismatch) by the rules above."""
        currencies = set(self.spend_currencies)
        if len(currencies) > 1:
            return None, None, True
        currency = next(iter(currencies), None) or self.fallback_currency
        sale_currencies = set(self.revenue)
        if currency is None and len(sale_currencies) == 1:
            currency = next(iter(sale_currencies))
        if sale_currencies - {currency}:
            return currency, None, True
        # without a currency there is no sale either (one sale currency would have been taken)
        return currency, self.revenue.get(currency, Decimal(0)).quantize(CENT), False


@dataclass
class Conversion:
    """An organization's reporting currency and the ECB rates of the days being computed; the (day,
    currency) pairs it found no rate for are kept in `missing`."""

    organization_id: str
    currency: str
    rates: dict[tuple[dt.date, str], Decimal]
    missing: set[tuple[dt.date, str]] = field(default_factory=set)

    @property
    def quantum(self) -> Decimal:
        """The reporting currency's smallest unit: 1 JPY, 0.01 USD, 0.001 KWD (ISO 4217 minor units)."""
        return Decimal(1).scaleb(-minor_units(self.currency))

    def convert(self, amount: Decimal, currency: str, day: dt.date) -> Decimal | None:
        """`amount` of `currency` on `day` in the reporting currency, rounded half up to its minor
        units; None when fx_rates_daily lacks a rate it needs (an amount already in the reporting
        currency needs none)."""
        if currency == self.currency:
            return amount.quantize(self.quantum, ROUND_HALF_UP)
        source, target = self._rate(currency, day), self._rate(self.currency, day)
        if source is None or target is None:
            return None
        return fx.convert(amount, source, target, self.quantum)

    def _rate(self, currency: str, day: dt.date) -> Decimal | None:
        if currency == fx.EUR:
            return Decimal(1)  # the ECB's rates are per euro
        rate = self.rates.get((day, currency))
        if rate is None:
            self.missing.add((day, currency))
        return rate


def describe_missing(missing: Iterable[tuple[dt.date, str]]) -> str:
    """'BRL on 2026-10-06; USD on 2 day(s) from 2026-10-06 to 2026-10-07': the rates fx_rates_daily lacks."""
    days: dict[str, list[dt.date]] = defaultdict(list)
    for day, currency in sorted(set(missing)):
        days[currency].append(day)
    return "; ".join(
        f"{c} on {d[0]}" if len(d) == 1 else f"{c} on {len(d)} day(s) from {d[0]} to {d[-1]}"
        for c, d in sorted(days.items())
    )


def reporting_columns(t: GroupTotals, day: dt.date, conversion: Conversion | None) -> dict[str, object]:
    """The reporting-currency columns of one (day, group): spend per currency and revenue per sale
    currency converted and rounded to the reporting currency's minor units, then summed; roas_reporting
    by `roas_of`. An amount that needs a rate fx_rates_daily lacks leaves its column NULL, and
    roas_reporting with it; the account-currency columns never need a rate."""
    if conversion is None:
        return {}
    zero = Decimal(0).quantize(conversion.quantum)
    spend = _converted_sum(conversion, t.spend_by_currency, day, zero)
    revenue = _converted_sum(conversion, t.revenue, day, zero)
    return {
        "reporting_currency": conversion.currency,
        "spend_reporting": spend,
        "revenue_reporting": revenue,
        "roas_reporting": roas_of(revenue, spend) if spend is not None else None,
    }


def _converted_sum(conversion: Conversion, amounts: dict[str, Decimal], day: dt.date, zero: Decimal) -> Decimal | None:
    total = zero
    for currency, amount in sorted(amounts.items()):
        converted = conversion.convert(amount, currency, day)
        if converted is None:
            return None
        total += converted
    return total


def _row(
    organization_id: str, day: dt.date, group_id: str, t: GroupTotals, conversion: Conversion | None = None
) -> RoasRow:
    currency, revenue, mismatch = t.finish()
    r = ratios(t.leads, t.sales, revenue, t.spend)
    return RoasRow(
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
        **reporting_columns(t, day, conversion),  # type: ignore[arg-type]
    )


def _with_meta(row: RoasRow, t: GroupTotals) -> RoasRow:
    """Meta's purchases beside the CRM's: value only in the group's currency, meta_roas as roas."""
    if t.meta_purchases is None and not t.meta_purchase_value:
        return row
    value = t.meta_purchase_value.get(row.currency) if row.currency and len(t.meta_purchase_value) == 1 else None
    meta_roas = roas_of(value, row.spend)
    return dataclasses.replace(row, meta_purchases=t.meta_purchases, meta_purchase_value=value, meta_roas=meta_roas)


def merge_sums(
    organization_id: str, sums: roas_store.GroupSums, conversion: Conversion | None = None
) -> Iterator[RoasRow]:
    """One ROAS row per (day, group) from the four sorted streams of sums."""
    tagged = (
        ((key, "spend", value) for key, value in sums.spend),
        ((key, "leads", value) for key, value in sums.leads),
        ((key, "sales", value) for key, value in sums.sales),
        ((key, "meta", value) for key, value in sums.meta_purchases),
    )
    merged = heapq.merge(*tagged, key=lambda item: item[0])
    for (day, group_id), items in itertools.groupby(merged, key=lambda item: item[0]):
        t = GroupTotals()
        for _, kind, value in items:
            if kind == "spend":
                currency, amount = value
                t.spend += amount
                t.spend_currencies.add(currency)
                t.spend_by_currency[currency] += amount
            elif kind == "leads":
                count, currency = value
                t.leads += count
                t.fallback_currency = t.fallback_currency or currency
            elif kind == "sales":
                currency, count, amount = value
                t.sales += count
                t.revenue[currency] += amount
            else:
                currency, count, amount = value
                if count is not None:
                    t.meta_purchases = (t.meta_purchases or 0) + count
                if amount is not None:
                    t.meta_purchase_value[currency] = t.meta_purchase_value.get(currency, Decimal(0)) + amount
                t.fallback_currency = t.fallback_currency or currency
        yield _with_meta(_row(organization_id, day, group_id, t, conversion), t)


class _Spool:
    """Computed rows on their way to the table: memory, then disk (the reads must finish first)."""

    def __init__(self, rows: Iterable[RoasRow]) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115 - closed in rows()
        self.count = 0
        for row in rows:
            pickle.dump(row, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self.count += 1

    def rows(self) -> Iterator[RoasRow]:
        self._file.seek(0)
        try:
            for _ in range(self.count):
                yield pickle.load(self._file)  # noqa: S301 - our own rows, written just above
        finally:
            self._file.close()


@dataclass
class RoasReport:
    rows_by_group: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_by_day_group: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    mismatches_by_group: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # rows whose reporting amounts are NULL for want of a rate, and the rates each organization lacked
    unconverted_by_group: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missing_rates: dict[str, set[tuple[dt.date, str]]] = field(default_factory=lambda: defaultdict(set))
    failures: dict[str, str] = field(default_factory=dict)  # organization -> why


def refresh_organization(
    engine: sa.Engine,
    organization_id: str,
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: RoasReport,
    groups: Sequence[str] = ROAS_GROUPS,
) -> None:
    """Recompute the organization's ROAS rows over [since, until], one transaction per window.

    A failure is recorded in `report.failures` (naming the organization and the window) instead
    of raised, so the other organizations go on; what was committed before stays. Rates missing from
    fx_rates_daily are no failure: the rows that need them keep NULL reporting amounts, and a
    warning names the currencies and days.
    """
    try:
        with engine.connect() as conn:
            own_accounts = roas_store.organization_ad_accounts(conn, organization_id)
            reporting = reporting_currency(conn, organization_id)
        sole_account = next(iter(own_accounts)) if len(own_accounts) == 1 else None
        for start, end in windows(since, until, window_days):
            with engine.begin() as conn:
                lock_organization(conn, organization_id)
                linear_plans(conn)
                conversion = Conversion(organization_id, reporting, fx_store.rates(conn, start, end))
                for group in groups:
                    sums = roas_store.group_sums(conn, organization_id, group, start, end, sole_account)
                    spool = _Spool(_counted(merge_sums(organization_id, sums, conversion), group, report))
                    roas_store.replace_roas(conn, group, organization_id, start, end, spool.rows())
            report.missing_rates[organization_id] |= conversion.missing
        if report.missing_rates.get(organization_id):
            log.warning(
                "organization %s: fx_rates_daily has no ECB rate of %s, needed to report it in %s: the reporting "
                "amounts of the rows that need one are NULL, the rest of its ROAS is written; materialize "
                "fx_rates_daily for those days, then its ROAS again",
                organization_id,
                describe_missing(report.missing_rates[organization_id]),
                reporting,
            )
    except ORGANIZATION_ERRORS as exc:
        reason = str(exc) if isinstance(exc, MetaspendError) else f"{type(exc).__name__}: {exc}"
        report.failures[organization_id] = redact(f"organization {organization_id}: {reason}")
        log.error("%s", report.failures[organization_id])


def _counted(rows: Iterable[RoasRow], group: str, report: RoasReport) -> Iterator[RoasRow]:
    for r in rows:
        report.rows_by_group[group] += 1
        report.rows_by_day_group[(r.date, group)] += 1
        report.mismatches_by_group[group] += r.revenue_currency_mismatch
        report.unconverted_by_group[group] += r.spend_reporting is None or r.revenue_reporting is None
        yield r
