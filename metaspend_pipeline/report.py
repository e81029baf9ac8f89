"""`metaspend roas`: the daily ROAS rows summed over a date range, in the product dashboard's shape.

Sums first, then ratios (never an average of daily ratios): conversionRate = salesCount /
leadsCount, avgTicket = revenue / salesCount, roas = revenue / spend, NULL where the denominator
(or, for roas, the revenue) is 0. A group with sales in another currency than its spend on any
day keeps revenue, avgTicket and roas NULL, and says so. With `--currency reporting` the sums are
of the reporting-currency columns (each day and currency converted at the ECB's rate of the day,
rounded to its minor units, then summed), so every group gets one ROAS in the organization's currency.
Money is shown with as many decimals as its currency has (none for JPY).

Meta's own view sits beside the CRM's: metaPurchases and metaPurchaseValue are the purchases Meta
attributes to the group under the ad account's attribution setting (`meta_purchases`,
`meta_purchase_value`), summed over the range; metaRoas = metaPurchaseValue / spend by the roas
rule. They are null where Meta reported no purchase on any day of the range; with `--currency
reporting` only metaPurchases is given (Meta's value is in the ad account's currency).

Each item names its object beside its id, and its parents (an ad's ad set and campaign), from
`meta_campaign`, `meta_adset` and `meta_ad` through the `meta_roas_by_<group>_named` views: null
where the object was never fetched.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.currency import DEFAULT_MINOR_UNITS, minor_units
from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.roas import ratios
from metaspend_pipeline.safe_text import safe_text
from metaspend_pipeline.storage import objects as objects_store
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.accounts import reporting_currency
from metaspend_pipeline.storage.schema import ROAS_TABLES, connected_account, meta_fetch_log, meta_spend_daily

ID_KEYS = {"campaign": "campaignId", "adset": "adsetId", "ad": "adId"}
# The keys before the numbers, per grouping level: the object's id and name, then its parents'.
NAME_KEYS = {
    "campaign": ("campaignName",),
    "adset": ("adsetName", "campaignId", "campaignName"),
    "ad": ("adName", "adsetId", "adsetName", "campaignId", "campaignName"),
}
_CAMEL = {"campaign_id": "campaignId", "campaign_name": "campaignName", "adset_id": "adsetId"}
_CAMEL |= {"adset_name": "adsetName", "ad_name": "adName"}
COLUMNS = (
    "leadsCount",
    "salesCount",
    "revenue",
    "spend",
    "avgTicket",
    "conversionRate",
    "roas",
    "metaPurchases",
    "metaPurchaseValue",
    "metaRoas",
    "currency",
)


@dataclass
class _Sums:
    leads: int = 0
    sales: int = 0
    revenue: Decimal = Decimal(0)
    spend: Decimal = Decimal(0)
    currencies: set[str] = field(default_factory=set)
    mismatch: bool = False
    meta_purchases: int | None = None
    meta_purchase_value: Decimal | None = None


def organization_known(conn: sa.Connection, organization_id: str, group: str) -> bool:
    table = ROAS_TABLES[group]
    connected = conn.execute(
        sa.select(sa.literal(1)).where(connected_account.c.organization_id == organization_id).limit(1)
    ).first()
    computed = conn.execute(sa.select(sa.literal(1)).where(table.c.organization_id == organization_id).limit(1)).first()
    return bool(connected or computed)


def unloaded_days(conn: sa.Connection, organization_id: str, since: dt.date, until: dt.date) -> list[dt.date]:
    """Days of the range the pipeline never loaded for the organization: no successful fetch covers
    them and no spend row has them. A loaded day without spend is not in the list: it is a real 0."""
    loaded: set[dt.date] = set()
    log = meta_fetch_log
    for first, last in conn.execute(
        sa.select(log.c.since, log.c.until).where(
            log.c.organization_id == organization_id,
            log.c.report == "spend",
            log.c.status == "OK",
            log.c.since <= until,
            log.c.until >= since,
        )
    ):
        day = max(first, since)
        while day <= min(last, until):
            loaded.add(day)
            day += dt.timedelta(days=1)
    spend = meta_spend_daily
    loaded.update(
        day
        for (day,) in conn.execute(
            sa.select(spend.c.date)
            .where(spend.c.organization_id == organization_id, spend.c.date.between(since, until))
            .distinct()
        )
    )
    total = (until - since).days + 1
    return [d for d in (since + dt.timedelta(days=i) for i in range(total)) if d not in loaded]


def day_ranges(days: Sequence[dt.date]) -> str:
    """`2026-10-01..2026-10-03, 2026-10-07`: consecutive days as one range."""
    parts: list[str] = []
    start = previous = None
    for day in [*days, None]:
        if start is not None and (day is None or day != previous + dt.timedelta(days=1)):
            parts.append(str(start) if start == previous else f"{start}..{previous}")
            start = None
        if day is not None and start is None:
            start = day
        previous = day
    return ", ".join(parts)


def roas_report(
    conn: sa.Connection,
    organization_id: str,
    group: str,
    since: dt.date,
    until: dt.date,
    currency: str = "account",
) -> list[dict[str, Any]]:
    """The range's sums per group; `currency="reporting"` sums the reporting-currency columns instead
    (each day already converted), so groups in several currencies get one ROAS."""
    if currency == "reporting":
        return _items(
            conn, organization_id, group, since, until, _reporting_sums(conn, organization_id, group, since, until)
        )
    sums: dict[str, _Sums] = defaultdict(_Sums)
    for row in roas_store.iter_roas(conn, group, since, until, [organization_id]):
        s = sums[row._mapping[f"{group}_id"]]
        s.leads += row.leads_count
        s.sales += row.sales_count
        s.spend += row.spend
        if row.currency:
            s.currencies.add(row.currency)
        if row.revenue_currency_mismatch or row.revenue is None:
            s.mismatch = True
        else:
            s.revenue += row.revenue
        if row.meta_purchases is not None:
            s.meta_purchases = (s.meta_purchases or 0) + row.meta_purchases
        if row.meta_purchase_value is not None:
            s.meta_purchase_value = (s.meta_purchase_value or Decimal(0)) + row.meta_purchase_value
    return _items(conn, organization_id, group, since, until, sums)


def _reporting_sums(
    conn: sa.Connection, organization_id: str, group: str, since: dt.date, until: dt.date
) -> dict[str, _Sums]:
    """Sums of the reporting-currency columns; an error naming the days whose rows are in another
    currency (computed before the reporting currency changed), or lack an amount for want of an
    exchange rate (fx_rates_daily had none when they were computed)."""
    expected = reporting_currency(conn, organization_id)
    sums: dict[str, _Sums] = defaultdict(_Sums)
    other: dict[str, set[dt.date]] = defaultdict(set)
    for row in roas_store.iter_roas(conn, group, since, until, [organization_id]):
        if row.reporting_currency != expected:
            other[f"in {row.reporting_currency or 'no reporting currency'}"].add(row.date)
            continue
        if row.spend_reporting is None or row.revenue_reporting is None:
            other["without an exchange rate (fx_rates_daily had none)"].add(row.date)
            continue
        s = sums[row._mapping[f"{group}_id"]]
        s.leads += row.leads_count
        s.sales += row.sales_count
        s.spend += row.spend_reporting
        s.revenue += row.revenue_reporting
        s.currencies.add(expected)
        if row.meta_purchases is not None:  # Meta's value stays in the account's currency: not summed here
            s.meta_purchases = (s.meta_purchases or 0) + row.meta_purchases
    if other:
        found = "; ".join(f"{day_ranges(sorted(days))} {why}" for why, days in sorted(other.items()))
        raise MetaspendError(
            f"the ROAS rows of organization {organization_id} are not all in its reporting currency {expected}: "
            f"{found}; compute those days again (metaspend backfill --from {since} --to {until} "
            f"--org {organization_id}) or report with --currency account"
        )
    return sums


def _items(
    conn: sa.Connection, organization_id: str, group: str, since: dt.date, until: dt.date, sums: dict[str, _Sums]
) -> list[dict[str, Any]]:
    names = objects_store.names_in_roas(conn, organization_id, group, since, until)
    out = []
    for group_id, s in sums.items():
        mismatch = s.mismatch or len(s.currencies) > 1
        revenue = None if mismatch else s.revenue
        r = ratios(s.leads, s.sales, revenue, s.spend)
        meta_value = s.meta_purchase_value if len(s.currencies) <= 1 else None
        named = {_CAMEL[k]: v for k, v in names.get(group_id, {}).items()}
        out.append(
            {
                ID_KEYS[group]: group_id,
                **{key: named.get(key) for key in NAME_KEYS[group]},
                "leadsCount": s.leads,
                "salesCount": s.sales,
                "revenue": revenue,
                "spend": s.spend,
                "avgTicket": r.avg_ticket,
                "conversionRate": r.conversion_rate,
                "roas": r.roas,
                "metaPurchases": s.meta_purchases,
                "metaPurchaseValue": meta_value,
                "metaRoas": ratios(0, 0, meta_value, s.spend).roas,
                "currency": next(iter(s.currencies)) if len(s.currencies) == 1 else None,
                "revenueCurrencyMismatch": mismatch,
            }
        )
    out.sort(key=lambda item: (-item["spend"], item[ID_KEYS[group]]))
    return out


def _number(value: Decimal, places: int | None) -> str:
    """A JSON number from a Decimal, without passing through float; `places` rounds half up."""
    if places is not None:
        return format(value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP), "f")
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


_MONEY = {"revenue", "spend", "avgTicket", "metaPurchaseValue"}


def _money_places(item: dict[str, Any]) -> int:
    """Money is shown with its currency's minor units (0 for JPY, 2 for USD); 2 without one currency."""
    return minor_units(item["currency"]) if item.get("currency") else DEFAULT_MINOR_UNITS


def _json_value(key: str, value: Any, places: int = DEFAULT_MINOR_UNITS) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _number(value, places if key in _MONEY else None)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def to_json(items: list[dict[str, Any]]) -> str:
    if not items:
        return "[]"
    lines = [
        "  {" + ", ".join(f"{json.dumps(k)}: {_json_value(k, v, _money_places(item))}" for k, v in item.items()) + "}"
        for item in items
    ]
    return "[\n" + ",\n".join(lines) + "\n]"


def _text(key: str, value: Any, places: int = DEFAULT_MINOR_UNITS) -> str:
    """A table or CSV cell: money with `places` decimals; names and ids (Meta's, or from URL parameters)
    with control characters escaped (`safe_text`), so a campaign named with terminal escapes prints them,
    not obeys them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _number(value, places if key in _MONEY else None)
    return safe_text(value)


# A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(key: str, value: Any, places: int) -> str:
    """Text cells (ids from URL parameters visitors control, currency codes) that a spreadsheet
    would run as a formula get a leading single quote, as OWASP recommends. Numbers are written
    as numbers, negative ones too: a Decimal or int prints only digits, a sign and a point, which
    no spreadsheet runs, and quoting them would turn them into text."""
    text = _text(key, value, places)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(items: list[dict[str, Any]], group: str) -> str:
    return items_to_csv(items, [ID_KEYS[group], *NAME_KEYS[group], *COLUMNS, "revenueCurrencyMismatch"])


def items_to_csv(items: list[dict[str, Any]], headers: Sequence[str]) -> str:
    """Items as CSV with the given columns, cells neutralized against spreadsheet formulas."""
    buffer = io.StringIO()
    # CRLF as RFC 4180 says: the csv module then also quotes a cell holding a bare CR
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    for item in items:
        writer.writerow([_csv_cell(h, item.get(h), _money_places(item)) for h in headers])
    return buffer.getvalue().removesuffix("\r\n")


def to_rows(items: list[dict[str, Any]], group: str) -> tuple[list[str], list[list[str]]]:
    headers, rows = items_to_rows(items, [ID_KEYS[group], *NAME_KEYS[group], *COLUMNS])
    for item, row in zip(items, rows, strict=True):
        if item["revenueCurrencyMismatch"]:
            row[headers.index("revenue")] = "mixed currencies"
    return headers, rows


def items_to_rows(items: list[dict[str, Any]], headers: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Items as the cells of `format_table` ("-" for a missing value)."""
    return list(headers), [[_text(h, item.get(h), _money_places(item)) or "-" for h in headers] for item in items]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table: a header, a rule, and left-aligned columns; every cell through `safe_text`."""
    cells = [[safe_text(h) for h in headers]] + [["" if c is None else safe_text(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
