"""Checks that catch wrong numbers, as plain functions over the warehouse (the asset checks call them).

Each returns the problems it found, worded so that a person can go and look: organization, ad
account, date, level, and the numbers that disagree.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import (
    BREAKDOWN_TABLES,
    REACH_PERIODS,
    REACH_TABLES,
    meta_ad_account,
    meta_campaign,
    meta_fetch_log,
    meta_raw_insights,
    meta_roas_by_campaign,
    meta_spend_daily,
)

TOLERANCE = Decimal("0.01")
KEYS_BY_LEVEL = {
    "CAMPAIGN": ("campaign_id",),
    "ADSET": ("campaign_id", "adset_id"),
    "AD": ("campaign_id", "adset_id", "ad_id"),
}


@dataclass(frozen=True)
class Finding:
    organization_id: str
    ad_account_id: str | None
    date: dt.date | None
    detail: str
    figures: Mapping[str, Decimal | int] = field(default_factory=dict, compare=False, hash=False)
    """The numbers behind `detail`, for the check's metadata (e.g. spend, median, ratio)."""

    def __str__(self) -> str:
        where = [f"organization {self.organization_id}"]
        if self.ad_account_id:
            where.append(f"ad account {self.ad_account_id}")
        if self.date:
            where.append(str(self.date))
        return f"{', '.join(where)}: {self.detail}"


def _scoped(query: sa.Select, table: sa.Table, organizations: Sequence[str] | None) -> sa.Select:
    return query.where(table.c.organization_id.in_(list(organizations))) if organizations is not None else query


def reconcile_levels(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[Finding]:
    """Per organization, ad account and day: ad sum = ad set sum = campaign sum = account total (one cent).

    Summed in SQL (exactly, see `storage.money`); only the sums per (ad account, day, level) come back.
    """
    t, r = meta_spend_daily, meta_raw_insights
    spend = _scoped(
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c.date, t.c.level, money_sum(conn, t.c.spend))
        .where(t.c.date.between(since, until))
        .group_by(t.c.organization_id, t.c.ad_account_id, t.c.date, t.c.level),
        t,
        organizations,
    )
    account_totals = _scoped(
        sa.select(r.c.organization_id, r.c.ad_account_id, r.c.date, r.c.level, money_sum(conn, r.c.spend))
        .where(r.c.level == "ACCOUNT")
        .where(r.c.date.between(since, until))
        .group_by(r.c.organization_id, r.c.ad_account_id, r.c.date, r.c.level),
        r,
        organizations,
    )
    sums: dict[tuple[str, str, dt.date], dict[str, Decimal]] = defaultdict(dict)
    for query in (spend, account_totals):
        for org, account, day, level, amount in conn.execute(query):
            sums[(org, account, day)][level] = read_money_sum(amount)
    findings = []
    for (org, account, day), by_level in sorted(sums.items()):
        values = {level: by_level.get(level, Decimal("0.00")) for level in ("ACCOUNT", "CAMPAIGN", "ADSET", "AD")}
        if max(values.values()) - min(values.values()) > TOLERANCE:
            detail = "levels disagree: " + ", ".join(f"{level.lower()} {amount}" for level, amount in values.items())
            findings.append(Finding(org, account, day, detail))
    return findings


def missing_keys(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[Finding]:
    """Rows whose level's ids are NULL, or that carry ids of a lower level."""
    t = meta_spend_daily
    conditions = []
    for level, keys in KEYS_BY_LEVEL.items():
        extra = [c for c in ("campaign_id", "adset_id", "ad_id") if c not in keys]
        conditions.append(
            sa.and_(
                t.c.level == level,
                sa.or_(*[t.c[k].is_(None) for k in keys], *[t.c[c].is_not(None) for c in extra]),
            )
        )
    query = _scoped(
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c.date, t.c.level, t.c.campaign_id, t.c.adset_id, t.c.ad_id)
        .where(t.c.date.between(since, until))
        .where(sa.or_(*conditions))
        .order_by(t.c.organization_id, t.c.date),
        t,
        organizations,
    )
    return [
        Finding(
            org,
            account,
            day,
            f"{level} row with campaign_id={campaign}, adset_id={adset}, ad_id={ad}: "
            f"a {level} row needs exactly {', '.join(KEYS_BY_LEVEL[level])}",
        )
        for org, account, day, level, campaign, adset, ad in conn.execute(query)
    ]


def currencies_per_ad_account(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[Finding]:
    """Every ad account's rows in one currency, and that currency the one Meta gives the account."""
    t = meta_spend_daily
    query = _scoped(
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c.currency)
        .where(t.c.date.between(since, until))
        .distinct(),
        t,
        organizations,
    )
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for org, account, currency in conn.execute(query):
        seen[(org, account)].add(currency)
    declared = dict(conn.execute(sa.select(meta_ad_account.c.ad_account_id, meta_ad_account.c.currency)).all())
    findings = []
    for (org, account), found in sorted(seen.items()):
        expected = declared.get(account)
        if len(found) > 1 or (expected and found != {expected}):
            findings.append(
                Finding(
                    org,
                    account,
                    None,
                    f"rows in {', '.join(sorted(found))}; Meta gives the ad account's currency as {expected or 'unknown'}",
                )
            )
    return findings


def roas_currency_mismatches(
    conn: sa.Connection, group: str, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[Finding]:
    """ROAS groups whose sales are in another currency than their spend (ROAS left NULL)."""
    return [
        Finding(
            row.organization_id,
            None,
            row.date,
            f"{group} {row._mapping[f'{group}_id']}: sales in another currency than the spend's ({row.currency}); "
            "revenue and roas left NULL",
        )
        for row in roas_store.iter_roas(conn, group, since, until, organizations, only_mismatches=True)
    ]


@dataclass(frozen=True)
class AttributionGap:
    """One campaign's Meta-claimed purchase value and CRM revenue over a range, in one currency."""

    organization_id: str
    campaign_id: str
    campaign_name: str | None
    currency: str
    meta_value: Decimal
    crm_revenue: Decimal

    @property
    def gap(self) -> Decimal:
        """|meta - crm| / max(meta, crm): 0 when they agree, 1 when one side is 0; symmetric, so it
        reads the same whichever side claims more (0.5: one is twice the other)."""
        larger = max(self.meta_value, self.crm_revenue)
        return abs(self.meta_value - self.crm_revenue) / larger if larger else Decimal(0)

    def finding(self, threshold: Decimal) -> Finding:
        name = f" ({self.campaign_name})" if self.campaign_name else ""
        return Finding(
            self.organization_id,
            None,
            None,
            f"campaign {self.campaign_id}{name}: Meta claims {self.meta_value} {self.currency} of purchases, the "
            f"CRM {self.crm_revenue} {self.currency} of revenue; gap {self.gap:.1%} > {threshold:.0%}",
            figures={"meta_purchase_value": self.meta_value, "crm_revenue": self.crm_revenue, "gap": self.gap},
        )


def attribution_gaps(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[AttributionGap]:
    """Per organization and campaign over [since, until]: Meta's purchase value (window `default`)
    and the CRM's revenue, summed exactly in SQL. Campaigns with a currency mismatch on any day
    (their revenue is NULL: `no_currency_mismatch` reports them), campaigns the CRM has no lead from in
    the range (it does not track them), and those with neither value nor revenue are left out."""
    t, c = meta_roas_by_campaign, meta_campaign
    query = _scoped(
        sa.select(
            t.c.organization_id,
            t.c.campaign_id,
            sa.func.min(c.c.name),
            sa.func.min(t.c.currency),
            money_sum(conn, t.c.meta_purchase_value),
            money_sum(conn, t.c.revenue),
        )
        .select_from(t.outerjoin(c, sa.and_(c.c.organization_id == t.c.organization_id, c.c.id == t.c.campaign_id)))
        .where(t.c.date.between(since, until))
        .group_by(t.c.organization_id, t.c.campaign_id)
        .having(sa.func.sum(t.c.leads_count) > 0)
        .having(sa.func.count(sa.distinct(t.c.currency)) == 1)
        .having(sa.func.max(sa.case((t.c.revenue_currency_mismatch, 1), else_=0)) == 0)
        .order_by(t.c.organization_id, t.c.campaign_id),
        t,
        organizations,
    )
    out = []
    for org, campaign, name, currency, meta_value, revenue in conn.execute(query):
        gap = AttributionGap(org, campaign, name, currency, read_money_sum(meta_value), read_money_sum(revenue))
        if gap.meta_value or gap.crm_revenue:
            out.append(gap)
    return out


def purchases_across_levels(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> list[Finding]:
    """Per organization, campaign and day: Meta's purchases on the campaign's own row against the sum
    over its ads, each row under the one action type ROAS picks for it (`storage.roas.chosen_purchases`).
    They differ when the ads report other purchase action types than the campaign row (an ad without
    omni_purchase counts its `purchase`), so the two levels' meta_purchases disagree."""
    counts: dict[tuple[str, str, dt.date, str], dict[str, int]] = defaultdict(lambda: {"CAMPAIGN": 0, "AD": 0})
    types: dict[tuple[str, str, dt.date, str], dict[str, dict[str, int]]] = defaultdict(
        lambda: {"CAMPAIGN": defaultdict(int), "AD": defaultdict(int)}
    )
    for level in ("CAMPAIGN", "AD"):
        chosen = roas_store.chosen_purchases(level, since, until, organizations)
        query = (
            sa.select(
                chosen.c.organization_id,
                chosen.c.ad_account_id,
                chosen.c.date,
                chosen.c.campaign_id,
                chosen.c.action_type,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(chosen.c.count), 0),
            )
            .where(chosen.c.campaign_id.is_not(None))
            .group_by(
                chosen.c.organization_id,
                chosen.c.ad_account_id,
                chosen.c.date,
                chosen.c.campaign_id,
                chosen.c.action_type,
            )
        )
        for org, account, day, campaign, action_type, rows, purchases in conn.execute(query):
            key = (org, account, day, campaign)
            counts[key][level] += int(purchases)
            types[key][level][action_type] += int(rows)
    findings = []
    for (org, account, day, campaign), by_level in sorted(counts.items()):
        if by_level["CAMPAIGN"] == by_level["AD"]:
            continue
        picked = {
            level: ", ".join(
                f"{t} ({n} {'ad' if level == 'AD' else 'row'}{'s' if n > 1 else ''})" for t, n in sorted(found.items())
            )
            or "none"
            for level, found in types[(org, account, day, campaign)].items()
        }
        findings.append(
            Finding(
                org,
                account,
                day,
                f"campaign {campaign}: Meta reports {by_level['CAMPAIGN']} purchase(s) on the campaign's row and "
                f"{by_level['AD']} summed over its ads; one purchase action type is picked per row ("
                f"{', '.join(roas_store.PURCHASE_ACTION_TYPES)}, the first present): the campaign's row counts "
                f"{picked['CAMPAIGN']}, its ads {picked['AD']}",
                figures={"campaign_purchases": by_level["CAMPAIGN"], "ads_purchases": by_level["AD"]},
            )
        )
    return findings


# --- breakdowns and reach ------------------------------------------------------------------------

# Meta's breakdown rows add up to the unbroken row exactly (to the cent, and every impression and
# click): no tolerance. Should Meta's own rounding ever differ, this is the number to raise.
BREAKDOWN_TOLERANCE = Decimal("0.00")
_IDS = ("campaign_id", "adset_id", "ad_id")


def _covered_days(conn: sa.Connection, report: str, since: dt.date, until: dt.date) -> set[tuple[str, str, dt.date]]:
    """(organization, ad account, day) of [since, until] that a successful fetch of `report` covered."""
    f = meta_fetch_log
    covered = set()
    query = (
        sa.select(f.c.organization_id, f.c.ad_account_id, f.c.since, f.c.until)
        .where(f.c.report == report, f.c.status == "OK", f.c.ad_account_id.is_not(None))
        .where(f.c.since <= until, f.c.until >= since)
        .distinct()
    )
    for org, account, first, last in conn.execute(query):
        day = max(first, since)
        while day <= min(last, until):
            covered.add((org, account, day))
            day += dt.timedelta(days=1)
    return covered


def breakdowns_reconcile(
    conn: sa.Connection, breakdown: str, levels: Sequence[str], since: dt.date, until: dt.date
) -> list[Finding]:
    """Per (organization, day, level, object), the breakdown's rows add up to meta_spend_daily's row:
    spend to the cent (BREAKDOWN_TOLERANCE), impressions and clicks exactly. Only days a breakdown fetch
    of the ad account completed are compared, at the levels fetched (`levels`, META_BREAKDOWN_LEVELS)."""
    b, t = BREAKDOWN_TABLES[breakdown], meta_spend_daily
    upper = [level.upper() for level in levels]
    keys = (b.c.organization_id, b.c.ad_account_id, b.c.date, b.c.level, *(b.c[c] for c in _IDS))
    parts = conn.execute(
        sa.select(*keys, money_sum(conn, b.c.spend), sa.func.sum(b.c.impressions), sa.func.sum(b.c.clicks))
        .where(b.c.date.between(since, until), b.c.level.in_(upper))
        .group_by(*keys)
    )
    sums = {tuple(r[:7]): (read_money_sum(r[7]), int(r[8] or 0), int(r[9] or 0)) for r in parts}
    whole = {
        tuple(r[:7]): (r[7], r.impressions or 0, r.clicks or 0)
        for r in conn.execute(
            sa.select(t.c.organization_id, t.c.ad_account_id, t.c.date, t.c.level, *(t.c[c] for c in _IDS), t.c.spend)
            .add_columns(t.c.impressions, t.c.clicks)
            .where(t.c.date.between(since, until), t.c.level.in_(upper))
        )
    }
    covered = _covered_days(conn, "breakdowns", since, until)
    findings = []
    for key in sorted(set(sums) | set(whole), key=lambda k: tuple(str(v) for v in k)):
        org, account, day, level, *ids = key
        if (org, account, day) not in covered:
            continue
        parts_sum, row = sums.get(key, (Decimal("0.00"), 0, 0)), whole.get(key, (Decimal("0.00"), 0, 0))
        if abs(parts_sum[0] - row[0]) <= BREAKDOWN_TOLERANCE and parts_sum[1:] == row[1:]:
            continue
        name = ids[len(KEYS_BY_LEVEL[level]) - 1]
        findings.append(
            Finding(
                org,
                account,
                day,
                f"{level.lower()} {name}: the {breakdown} rows add up to spend {parts_sum[0]}, impressions "
                f"{parts_sum[1]}, clicks {parts_sum[2]}; meta_spend_daily has {row[0]}, {row[1]}, {row[2]}",
                {"breakdown_spend": parts_sum[0], "spend": row[0]},
            )
        )
    return findings


def reach_above_impressions(conn: sa.Connection, period: str, since: dt.date, until: dt.date) -> list[Finding]:
    """Rows whose reach is larger than their impressions: a person is reached by one impression at least."""
    t, start = REACH_TABLES[period], REACH_PERIODS[period]
    query = (
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c[start], t.c.level, *(t.c[c] for c in _IDS))
        .add_columns(t.c.reach, t.c.impressions)
        .where(t.c[start].between(since, until), t.c.reach > t.c.impressions)
        .order_by(t.c.organization_id, t.c[start])
    )
    return [
        Finding(
            r.organization_id,
            r.ad_account_id,
            r[2],
            f"{r.level.lower()} {_object_id(r)}: reach {r.reach} is larger than impressions {r.impressions}",
            {"reach": r.reach, "impressions": r.impressions},
        )
        for r in conn.execute(query)
    ]


def _object_id(row: Any) -> str:
    return next((str(row._mapping[c]) for c in reversed(_IDS) if row._mapping[c] is not None), row.ad_account_id)


def reach_adds_up(conn: sa.Connection, period: str, since: dt.date, until: dt.date) -> tuple[list[Finding], int]:
    """Per reach row whose days are all loaded, impressions and spend equal meta_spend_daily's over the
    period (the account level against its campaigns'); reach itself is never a sum and is not compared.
    Returns the findings and how many rows could not be compared (days not loaded)."""
    t, d, start = REACH_TABLES[period], meta_spend_daily, REACH_PERIODS[period]
    rows = conn.execute(
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c.level, *(t.c[c] for c in _IDS), t.c[start])
        .add_columns(t.c.period_end, t.c.impressions, t.c.spend)
        .where(t.c[start].between(since, until))
    ).all()
    if not rows:
        return [], 0
    first = min(r[6] for r in rows)
    last = max(r.period_end for r in rows)
    covered = _covered_days(conn, "spend", first, last)
    daily: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [Decimal("0.00"), 0])
    for r in conn.execute(
        sa.select(d.c.organization_id, d.c.ad_account_id, d.c.date, d.c.level, *(d.c[c] for c in _IDS), d.c.spend)
        .add_columns(d.c.impressions)
        .where(d.c.date.between(first, last))
    ):
        covered.add((r.organization_id, r.ad_account_id, r.date))
        for key in _reach_keys(r):
            daily[(*key, r.date)][0] += r.spend
            daily[(*key, r.date)][1] += r.impressions or 0
    findings, skipped = [], 0
    for r in rows:
        org, account, level, *ids, begin = r[:7]
        span = [begin + dt.timedelta(days=i) for i in range((r.period_end - begin).days + 1)]
        if any((org, account, day) not in covered for day in span):
            skipped += 1
            continue
        spend = sum((daily[(org, account, level, *ids, day)][0] for day in span), Decimal("0.00"))
        impressions = sum(daily[(org, account, level, *ids, day)][1] for day in span)
        if spend != r.spend or impressions != r.impressions:
            findings.append(
                Finding(
                    org,
                    account,
                    begin,
                    f"{level.lower()} {_object_id(r)}, {period} {begin}..{r.period_end}: Meta's period row has spend "
                    f"{r.spend}, impressions {r.impressions}; meta_spend_daily adds up to {spend}, {impressions}",
                    {"spend": r.spend, "daily_spend": spend},
                )
            )
    return findings, skipped


def _reach_keys(daily_row: Any) -> list[tuple[Any, ...]]:
    """The reach rows a meta_spend_daily row adds to: its own level's, and the ad account's (its
    campaign rows sum to the account)."""
    m = daily_row._mapping
    own = (m["organization_id"], m["ad_account_id"], m["level"], *(m[c] for c in _IDS))
    if m["level"] == "CAMPAIGN":
        return [own, (m["organization_id"], m["ad_account_id"], "ACCOUNT", None, None, None)]
    return [own]
