"""Reads of the product's `lead` and `sale` tables, and the ROAS tables' writes and reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.db import is_postgres, utcnow
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    ROAS_TABLES,
    connected_account,
    lead,
    meta_ad_account,
    meta_conversions_daily,
    meta_object_account,
    meta_spend_daily,
    sale,
)

LEVEL_OF_GROUP = {"campaign": "CAMPAIGN", "adset": "ADSET", "ad": "AD"}
READ_BATCH = 5000
# Meta's purchases are read under one action type per row, the first present of these: the same
# purchases are listed under each, and summing them would count each two or three times.
PURCHASE_ACTION_TYPES = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
PURCHASE_WINDOW = "default"  # the ad account's own attribution setting, as Ads Manager shows it


@dataclass(frozen=True)
class RoasRow:
    """One row of a `meta_roas_by_<group>` table."""

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
    # Meta's view of the same day and group (attributed purchases, `meta_conversions_daily`)
    meta_purchases: int | None = None
    meta_purchase_value: Decimal | None = None
    meta_roas: Decimal | None = None
    # The organization's reporting currency, converted per day at the ECB's rates (`fx_rates_daily`)
    reporting_currency: str | None = None
    spend_reporting: Decimal | None = None
    revenue_reporting: Decimal | None = None
    roas_reporting: Decimal | None = None


def organization_ad_accounts(conn: sa.Connection, organization_id: str) -> set[str]:
    """Every ad account the organization's connected accounts list, whatever their status."""
    out: set[str] = set()
    query = sa.select(connected_account.c.ad_accounts).where(connected_account.c.organization_id == organization_id)
    for (accounts,) in conn.execute(query):
        out.update(accounts or ())
    return out


def roas_organizations(conn: sa.Connection) -> list[str]:
    """Organizations ROAS is computed for: every Meta-connected one, and any that ever had spend
    (read from the small object map, not from the spend table's history)."""
    connected = sa.select(connected_account.c.organization_id)
    spending = sa.select(meta_object_account.c.organization_id)
    union = sa.union(connected, spending).subquery()
    return list(conn.execute(sa.select(union.c.organization_id).order_by(union.c.organization_id)).scalars())


def replace_roas(
    conn: sa.Connection, group: str, organization_id: str, since: dt.date, until: dt.date, rows: Iterable[RoasRow]
) -> int:
    """Replace the organization's rows of [since, until] in `meta_roas_by_<group>`, in the caller's
    transaction, under the organization's lock (an overlapping run waits instead of colliding)."""
    lock_organization(conn, organization_id)
    table = ROAS_TABLES[group]
    conn.execute(
        table.delete().where(table.c.organization_id == organization_id).where(table.c.date.between(since, until))
    )
    now = utcnow()
    columns = (
        "organization_id",
        "date",
        f"{group}_id",
        "currency",
        "leads_count",
        "sales_count",
        "revenue",
        "spend",
        "avg_ticket",
        "conversion_rate",
        "roas",
        "revenue_currency_mismatch",
        "meta_purchases",
        "meta_purchase_value",
        "meta_roas",
        "reporting_currency",
        "spend_reporting",
        "revenue_reporting",
        "roas_reporting",
        "updated_at",
    )
    return load_rows(
        conn,
        table,
        columns,
        (
            (
                r.organization_id,
                r.date,
                r.group_id,
                r.currency,
                r.leads_count,
                r.sales_count,
                r.revenue,
                r.spend,
                r.avg_ticket,
                r.conversion_rate,
                r.roas,
                r.revenue_currency_mismatch,
                r.meta_purchases,
                r.meta_purchase_value,
                r.meta_roas,
                r.reporting_currency,
                r.spend_reporting,
                r.revenue_reporting,
                r.roas_reporting,
                now,
            )
            for r in rows
        ),
    )


Key = tuple[dt.date, str]


@dataclass(frozen=True)
class GroupSums:
    """The sums ROAS is made of, per (day, group id), each stream sorted by that key.

    spend: ((day, group), (currency, spend)); leads: ((day, group), (count, ad account currency));
    sales: ((day, group), (currency, count, amount));
    meta_purchases: ((day, group), (currency, count or None, value or None)), Meta's view.
    """

    spend: Iterator[tuple[Key, tuple[str, Decimal]]]
    leads: Iterator[tuple[Key, tuple[int, str | None]]]
    sales: Iterator[tuple[Key, tuple[str, int, Decimal]]]
    meta_purchases: Iterator[tuple[Key, tuple[str, int | None, Decimal | None]]]


def _binary(conn: sa.Connection, column: Any) -> Any:
    """Order ids by their bytes on both databases, the order Python's comparison agrees with."""
    return sa.collate(column, "C") if is_postgres(conn) else column


def _local_date(conn: sa.Connection, moment: Any, zone: Any) -> Any:
    """The calendar day of a UTC timestamp in a time zone, in SQL (SQLite: a function of ours)."""
    if is_postgres(conn):
        return sa.cast(sa.func.timezone(zone, moment), sa.Date)
    return sa.type_coerce(sa.func.metaspend_local_date(moment, zone), sa.Date)


def _stream(conn: sa.Connection, query: sa.Select) -> Iterator[sa.Row]:
    yield from conn.execute(query, execution_options={"stream_results": True, "yield_per": READ_BATCH})


def group_sums(
    conn: sa.Connection,
    organization_id: str,
    group: str,
    since: dt.date,
    until: dt.date,
    sole_account: str | None,
) -> GroupSums:
    """Spend, leads and sales of the organization over [since, until] per day and `group` id.

    A lead's day is its creation day in its ad account's time zone; its ad account is its ad's,
    else its ad set's, else its campaign's (as Meta's rows tie them, `meta_object_account`), else
    the organization's only ad account, else none (UTC). Only the leads created around the window
    are read, never the organization's history.
    """
    level, id_column = LEVEL_OF_GROUP[group], f"{group}_id"
    t = meta_spend_daily
    spend_query = (
        sa.select(t.c.date, t.c[id_column], t.c.currency, money_sum(conn, t.c.spend))
        .where(t.c.organization_id == organization_id)
        .where(t.c.date.between(since, until))
        .where(t.c.level == level)
        .where(t.c[id_column].is_not(None))
        .group_by(t.c.date, t.c[id_column], t.c.currency)
        .order_by(t.c.date, _binary(conn, t.c[id_column]), t.c.currency)
    )

    maps = {lvl: meta_object_account.alias(f"oa_{lvl.lower()}") for lvl in ("AD", "ADSET", "CAMPAIGN")}
    column_of = {"AD": lead.c.ad_id, "ADSET": lead.c.adset_id, "CAMPAIGN": lead.c.campaign_id}
    joined: Any = lead
    for lvl, m in maps.items():
        joined = joined.outerjoin(
            m,
            sa.and_(m.c.organization_id == lead.c.organization_id, m.c.level == lvl, m.c.object_id == column_of[lvl]),
        )
    account = sa.func.coalesce(*[m.c.ad_account_id for m in maps.values()], sa.literal(sole_account, sa.Text))
    joined = joined.outerjoin(meta_ad_account, meta_ad_account.c.ad_account_id == account)
    zone = sa.func.coalesce(meta_ad_account.c.timezone_name, sa.literal("UTC"))
    first = dt.datetime.combine(since - dt.timedelta(days=1), dt.time(), dt.UTC)
    last = dt.datetime.combine(until + dt.timedelta(days=2), dt.time(), dt.UTC)
    leads_of_window = (
        sa.select(
            lead.c.id.label("lead_id"),
            lead.c.organization_id,
            lead.c[id_column].label("group_id"),
            _local_date(conn, lead.c.created_at, zone).label("day"),
            meta_ad_account.c.currency.label("account_currency"),
        )
        .select_from(joined)
        .where(lead.c.organization_id == organization_id)
        .where(lead.c.created_at >= first)
        .where(lead.c.created_at < last)
        .where(lead.c[id_column].is_not(None))
        .where(lead.c[id_column] != "")
        .subquery("leads_of_window")
    )
    w = leads_of_window
    in_window = w.c.day.between(since, until)
    leads_query = (
        sa.select(w.c.day, w.c.group_id, sa.func.count(), sa.func.min(w.c.account_currency))
        .where(in_window)
        .group_by(w.c.day, w.c.group_id)
        .order_by(w.c.day, _binary(conn, w.c.group_id))
    )
    sale_currency = sa.func.upper(sale.c.currency)
    sales_query = (
        sa.select(w.c.day, w.c.group_id, sale_currency, sa.func.count(), money_sum(conn, sale.c.amount))
        .select_from(
            w.join(sale, sa.and_(sale.c.lead_id == w.c.lead_id, sale.c.organization_id == w.c.organization_id))
        )
        .where(in_window)
        .group_by(w.c.day, w.c.group_id, sale_currency)
        .order_by(w.c.day, _binary(conn, w.c.group_id), sale_currency)
    )
    return GroupSums(
        spend=(((r[0], r[1]), (r[2], read_money_sum(r[3]))) for r in _stream(conn, spend_query)),
        leads=(((r[0], r[1]), (r[2], r[3])) for r in _stream(conn, leads_query)),
        sales=(((r[0], r[1]), (r[2], r[3], read_money_sum(r[4]))) for r in _stream(conn, sales_query)),
        meta_purchases=(
            ((r[0], r[1]), (r[2], r[3], None if r[4] is None else read_money_sum(r[4])))
            for r in _stream(conn, meta_purchases_query(conn, organization_id, group, since, until))
        ),
    )


def chosen_purchases(
    level: str, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> sa.Subquery:
    """Meta's purchases of each row (organization, day, object) at `level`, window `default`, under
    one action type: the first of PURCHASE_ACTION_TYPES Meta sent for it."""
    c = meta_conversions_daily
    rank = sa.case(
        *[(c.c.action_type == name, i) for i, name in enumerate(PURCHASE_ACTION_TYPES)],
        else_=len(PURCHASE_ACTION_TYPES),
    )
    ranked = (
        sa.select(
            c.c.organization_id,
            c.c.ad_account_id,
            c.c.date,
            c.c.campaign_id,
            c.c.adset_id,
            c.c.ad_id,
            c.c.action_type,
            c.c.currency,
            c.c.count,
            c.c.value,
            sa.func.row_number()
            .over(partition_by=[c.c.organization_id, c.c.date, c.c.campaign_id, c.c.adset_id, c.c.ad_id], order_by=rank)
            .label("choice"),
        )
        .where(c.c.date.between(since, until))
        .where(c.c.level == level)
        .where(c.c.attribution_window == PURCHASE_WINDOW)
        .where(c.c.action_type.in_(PURCHASE_ACTION_TYPES))
    )
    if organizations is not None:
        ranked = ranked.where(c.c.organization_id.in_(list(organizations)))
    chosen = ranked.subquery("ranked")
    return sa.select(chosen).where(chosen.c.choice == 1).subquery("chosen")


def meta_purchases_query(
    conn: sa.Connection, organization_id: str, group: str, since: dt.date, until: dt.date
) -> sa.Select:
    """Meta's purchases and their value per (day, group) at the group's level, window `default`:
    for each row's object the first action type of PURCHASE_ACTION_TYPES Meta sent, then summed."""
    level, id_column = LEVEL_OF_GROUP[group], f"{group}_id"
    chosen = chosen_purchases(level, since, until, [organization_id])
    # SUM of only NULLs is NULL: a group whose purchases came without a value keeps its value NULL
    return (
        sa.select(
            chosen.c.date,
            chosen.c[id_column],
            chosen.c.currency,
            sa.func.sum(chosen.c.count),
            money_sum(conn, chosen.c.value),
        )
        .where(chosen.c[id_column].is_not(None))
        .group_by(chosen.c.date, chosen.c[id_column], chosen.c.currency)
        .order_by(chosen.c.date, _binary(conn, chosen.c[id_column]), chosen.c.currency)
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
