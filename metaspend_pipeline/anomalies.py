"""Spend that looks wrong though every number adds up: plain functions over the warehouse that the
spend anomaly checks (warnings) call.

Each checks every day of [since, until] per organization and ad account, from sums that SQL makes
per (ad account, day) over that range and the days before it (`AnomalySettings.lookback_days`);
only those sums come back, so the cost grows with ad accounts x days, not with rows.

- `stopped_spending`: spend on each of the `stopped_days` days before the day, none on the day,
  which was loaded (a day not loaded is `missing_ad_accounts`'s, not a stop).
- `spend_outliers`: a day with spend above `spike_ratio` x, or below `drop_ratio` x, the median
  of the ad account's days with spend among the `median_days` days before it; compared only when
  there are at least `min_history_days` such days, so a new ad account does not warn.
- `missing_ad_accounts`: a day loaded for some ad accounts of an organization and not for others,
  on or after the day the missing one was first connected to the organization or first loaded.

A day is loaded for an ad account when a successful fetch (`meta_fetch_log`, status OK) covered it
or `meta_spend_daily` has rows of it. Meta sends no row for a day without delivery, so a loaded day
without rows is a day of zero spend, and a day neither fetched nor stored is a day not loaded.
Spend is the sum of the CAMPAIGN rows (each level repeats the same spend), in the ad account's
currency.
"""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.settings import AnomalySettings
from metaspend_pipeline.storage.accounts import first_connections
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import meta_ad_account, meta_fetch_log, meta_spend_daily
from metaspend_pipeline.validation import Finding

ZERO = Decimal("0.00")
RATIO_SHOWN = Decimal("0.001")
LISTED_ACCOUNTS = 5  # loaded ad accounts named in a missing ad account's finding

AccountKey = tuple[str, str]  # (organization, ad account)


@dataclass(frozen=True)
class Anomalies:
    """What a check found, and the numbers of the whole check that the UI plots (counts, ratios)."""

    findings: list[Finding]
    figures: dict[str, int | Decimal] = field(default_factory=dict)


def _days(since: dt.date, until: dt.date) -> Iterator[dt.date]:
    for n in range((until - since).days + 1):
        yield since + dt.timedelta(days=n)


def _before(day: dt.date, count: int) -> list[dt.date]:
    """The `count` days before `day`, oldest first."""
    return [day - dt.timedelta(days=n) for n in range(count, 0, -1)]


def daily_spend(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> dict[tuple[str, str, str], dict[dt.date, Decimal]]:
    """Spend per (organization, ad account, currency) and day of [since, until], summed in SQL
    (exactly, see `storage.money`); a day with rows of zero spend is there with 0.00."""
    t = meta_spend_daily
    query = (
        sa.select(t.c.organization_id, t.c.ad_account_id, t.c.currency, t.c.date, money_sum(conn, t.c.spend))
        .where(t.c.level == "CAMPAIGN")
        .where(t.c.date.between(since, until))
        .group_by(t.c.organization_id, t.c.ad_account_id, t.c.currency, t.c.date)
    )
    if organizations is not None:
        query = query.where(t.c.organization_id.in_(list(organizations)))
    spend: dict[tuple[str, str, str], dict[dt.date, Decimal]] = defaultdict(dict)
    for org, account, currency, day, amount in conn.execute(query):
        spend[(org, account, currency)][day] = read_money_sum(amount)
    return spend


def fetched_days(
    conn: sa.Connection, since: dt.date, until: dt.date, organizations: Sequence[str] | None = None
) -> tuple[dict[AccountKey, set[dt.date]], dict[AccountKey, set[dt.date]]]:
    """Days of [since, until] per (organization, ad account) that a fetch covered: those of a
    successful fetch, and those of a failed one (a later fetch may have loaded them since)."""
    f = meta_fetch_log
    query = (
        sa.select(f.c.organization_id, f.c.ad_account_id, f.c.since, f.c.until, f.c.status)
        .where(f.c.ad_account_id.is_not(None))  # an organization that failed as a whole names no ad account
        .where(f.c.report == "spend")  # the daily insights: breakdowns and reach load no day of spend
        .where(f.c.since <= until)
        .where(f.c.until >= since)
        .distinct()
    )
    if organizations is not None:
        query = query.where(f.c.organization_id.in_(list(organizations)))
    ok: dict[AccountKey, set[dt.date]] = defaultdict(set)
    failed: dict[AccountKey, set[dt.date]] = defaultdict(set)
    for org, account, first, last, status in conn.execute(query):
        (ok if status == "OK" else failed)[(org, account)].update(_days(max(first, since), min(last, until)))
    return ok, failed


def stopped_spending(
    conn: sa.Connection,
    since: dt.date,
    until: dt.date,
    settings: AnomalySettings,
    organizations: Sequence[str] | None = None,
) -> Anomalies:
    """Ad accounts that spent (> 0) on each of the `stopped_days` days before a loaded day and
    nothing on it (no rows, or rows of 0)."""
    n = settings.stopped_days
    spend = daily_spend(conn, since - dt.timedelta(days=n), until, organizations)
    fetched, _ = fetched_days(conn, since, until, organizations)
    findings = []
    for (org, account, currency), by_day in sorted(spend.items()):
        for day in _days(since, until):
            before = _before(day, n)
            if by_day.get(day, ZERO) > 0 or not all(by_day.get(d, ZERO) > 0 for d in before):
                continue
            if day not in by_day and day not in fetched.get((org, account), set()):
                continue  # not loaded: reported by missing_ad_accounts
            total = sum((by_day[d] for d in before), ZERO)
            shown = f"0.00 {currency} (rows of zero spend)" if day in by_day else "no spend rows"
            findings.append(
                Finding(
                    org,
                    account,
                    day,
                    f"stopped spending: {shown}, after spending on each of the {n} days before "
                    f"({before[0]}..{before[-1]}: {total} {currency} in all, {by_day[before[-1]]} {currency} "
                    "the day before)",
                    figures={"spend": by_day.get(day, ZERO), "spend_days_before": total, "days_before": n},
                )
            )
    return Anomalies(
        findings,
        {
            "ad_accounts_stopped": len({(f.organization_id, f.ad_account_id) for f in findings}),
            "ad_accounts": len({(org, account) for org, account, _ in spend}),
        },
    )


def spend_outliers(
    conn: sa.Connection,
    since: dt.date,
    until: dt.date,
    settings: AnomalySettings,
    organizations: Sequence[str] | None = None,
) -> Anomalies:
    """Days whose spend is above `spike_ratio` x, or below `drop_ratio` x, the median of the ad
    account's days with spend (> 0) among the `median_days` days before; strictly, so a day at
    exactly 5 x does not warn. A day without spend is `stopped_spending`'s, and a day with fewer
    than `min_history_days` days with spend before it is not compared."""
    m = settings.median_days
    spend = daily_spend(conn, since - dt.timedelta(days=m), until, organizations)
    findings = []
    ratios: list[Decimal] = []
    short_history = spikes = drops = 0
    for (org, account, currency), by_day in sorted(spend.items()):
        for day in _days(since, until):
            amount = by_day.get(day, ZERO)
            if amount <= 0:
                continue
            history = [by_day[d] for d in _before(day, m) if by_day.get(d, ZERO) > 0]
            if len(history) < settings.min_history_days:
                short_history += 1
                continue
            median = statistics.median(history)
            ratio = amount / median
            ratios.append(ratio)
            if amount > settings.spike_ratio * median:
                spikes += 1
                rule = f"above {settings.spike_ratio}x"
            elif amount < settings.drop_ratio * median:
                drops += 1
                rule = f"below {settings.drop_ratio}x"
            else:
                continue
            findings.append(
                Finding(
                    org,
                    account,
                    day,
                    f"spend {amount} {currency} is {ratio.quantize(RATIO_SHOWN)}x the median {median} {currency} "
                    f"of its {len(history)} days with spend in the {m} days before ({rule})",
                    figures={"spend": amount, "median": median, "ratio": ratio, "history_days": len(history)},
                )
            )
    figures: dict[str, int | Decimal] = {
        "spikes": spikes,
        "drops": drops,
        "ad_account_days_compared": len(ratios),
        "ad_account_days_short_history": short_history,
    }
    if ratios:
        figures["max_ratio"] = max(ratios)
        figures["min_ratio"] = min(ratios)
    return Anomalies(findings, figures)


def expected_from(conn: sa.Connection, keys: Iterable[AccountKey]) -> dict[AccountKey, dt.date]:
    """The first day each (organization, ad account) is expected to be loaded: the earliest of the day
    it was first connected to the organization (in the ad account's time zone), the first day a fetch
    of it covered (successful or not), and its first stored day. Before it, a day is not "missing"."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    accounts = sorted({a for _, a in keys})
    connected = first_connections(conn, sorted({o for o, _ in keys}))
    zones = dict(
        conn.execute(
            sa.select(meta_ad_account.c.ad_account_id, meta_ad_account.c.timezone_name).where(
                meta_ad_account.c.ad_account_id.in_(accounts)
            )
        ).all()
    )
    f = meta_fetch_log
    first_fetched = {
        (org, account): first
        for org, account, first in conn.execute(
            sa.select(f.c.organization_id, f.c.ad_account_id, sa.func.min(f.c.since))
            .where(f.c.ad_account_id.in_(accounts))
            .group_by(f.c.organization_id, f.c.ad_account_id)
        )
    }
    s = meta_spend_daily
    out: dict[AccountKey, dt.date] = {}
    for org, account in keys:
        # one ad account at a time: the index on (ad_account_id, date) answers it at once
        stored = conn.scalar(
            sa.select(sa.func.min(s.c.date)).where(s.c.ad_account_id == account, s.c.organization_id == org)
        )
        days = [d for d in (first_fetched.get((org, account)), stored) if d is not None]
        at = connected.get((org, account))
        if at is not None:
            days.append(at.astimezone(_zone(zones.get(account))).date())
        out[(org, account)] = min(days, default=dt.date.min)
    return out


def _zone(name: str | None) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name) if name else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def missing_ad_accounts(
    conn: sa.Connection,
    since: dt.date,
    until: dt.date,
    settings: AnomalySettings,
    organizations: Sequence[str] | None = None,
) -> Anomalies:
    """Per organization and day: the ad accounts not loaded that day when others were, from the day
    each was first connected or first loaded on (`expected_from`): a new ad account is not missing on
    the days before the organization had it.

    The organization's ad accounts are those fetched (successfully or not) or stored on any day
    from `lookback_days` days before the range to its end: an ad account that is no longer
    fetched keeps warning for that long, then drops out.
    """
    start = since - dt.timedelta(days=settings.lookback_days)
    fetched, failed = fetched_days(conn, start, until, organizations)
    loaded: dict[AccountKey, set[dt.date]] = defaultdict(set)
    for key, days in fetched.items():
        loaded[key] |= days
    for (org, account, _), by_day in daily_spend(conn, start, until, organizations).items():
        loaded[(org, account)] |= set(by_day)
    accounts: dict[str, set[str]] = defaultdict(set)
    for org, account in (*loaded, *failed):
        accounts[org].add(account)
    absent: list[tuple[str, dt.date, list[str], str]] = []  # (organization, day, loaded ad accounts, missing one)
    for org, members in sorted(accounts.items()):
        for day in _days(since, until):
            present = sorted(a for a in members if day in loaded.get((org, a), set()))
            if not present:
                continue  # nothing loaded: the day is missing as a whole (every_organization_fetched, yesterday_loaded)
            absent.extend((org, day, present, account) for account in sorted(members - set(present)))
    expected = expected_from(conn, {(org, account) for org, _, _, account in absent})
    absent = [a for a in absent if a[1] >= expected[(a[0], a[3])]]
    missing_per_day: dict[tuple[str, dt.date], int] = defaultdict(int)
    for org, day, _, _ in absent:
        missing_per_day[(org, day)] += 1
    findings = []
    for org, day, present, account in absent:
        listed = ", ".join(present[:LISTED_ACCOUNTS]) + (" ..." if len(present) > LISTED_ACCOUNTS else "")
        why = "its fetch failed" if day in failed.get((org, account), set()) else "not fetched"
        last = max((d for d in loaded.get((org, account), set()) if d < day), default=None)
        findings.append(
            Finding(
                org,
                account,
                day,
                f"not loaded ({why}) while {len(present)} other ad account(s) of the organization are "
                f"({listed}); last loaded {last if last else f'not since {start}'}",
                figures={"ad_accounts_loaded": len(present), "ad_accounts_missing": missing_per_day[(org, day)]},
            )
        )
    return Anomalies(
        findings,
        {
            "organization_days_incomplete": len({(f.organization_id, f.date) for f in findings}),
            "ad_accounts": sum(len(members) for members in accounts.values()),
        },
    )
