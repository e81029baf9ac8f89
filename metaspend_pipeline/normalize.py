"""`meta_raw_insights` -> `meta_spend_daily`: the raw rows merged per organization, in SQL.

The raw rows were parsed and validated when they were fetched (their ids and numbers are
columns), so this step is set-based SQL (`storage.spend.refresh_spend`); Meta's conversions, kept
as lists in the raw rows, are rebuilt into `meta_conversions_daily` in the same transaction
(`storage.conversions.refresh_conversions`, set-based too: the lists were validated when fetched). Each organization's
window is replaced in one transaction, all its ad accounts and levels together, so a reader
never sees a day of an organization half-written. One organization's failure is recorded and
the others go on.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline.errors import ORGANIZATION_ERRORS, MetaspendError
from metaspend_pipeline.ingest import windows
from metaspend_pipeline.redaction import get_logger, redact
from metaspend_pipeline.settings import ATTRIBUTION_WINDOWS
from metaspend_pipeline.storage import breakdowns as breakdown_store
from metaspend_pipeline.storage import conversions as conversions_store
from metaspend_pipeline.storage import spend as spend_store
from metaspend_pipeline.storage.db import utcnow

log = get_logger(__name__)


@dataclass
class NormalizeReport:
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    conversions: int = 0  # rows written to meta_conversions_daily
    rows_by_day_level: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    failures: dict[str, str] = field(default_factory=dict)  # organization -> why

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day_level.values())


def normalize_organization(
    engine: sa.Engine,
    organization_id: str,
    ad_account_ids: Sequence[str],
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: NormalizeReport,
) -> None:
    """Rebuild the organization's `meta_spend_daily` rows of these ad accounts from the raw rows.

    A failure is recorded in `report.failures` (naming the organization and the window) instead
    of raised: what was committed before stays, and the other organizations go on.
    """
    for start, end in windows(since, until, window_days):
        try:
            with engine.begin() as conn:
                now = utcnow()
                stats = spend_store.refresh_spend(conn, organization_id, ad_account_ids, start, end, now)
                conversions = conversions_store.refresh_conversions(
                    conn, organization_id, ad_account_ids, start, end, now, ATTRIBUTION_WINDOWS
                )
        except ORGANIZATION_ERRORS as exc:
            reason = str(exc) if isinstance(exc, MetaspendError) else f"{type(exc).__name__}: {exc}"
            report.failures[organization_id] = redact(f"organization {organization_id}, {start}..{end}: {reason}")
            log.error("%s", report.failures[organization_id])
            return
        report.written += stats.written
        report.unchanged += stats.unchanged
        report.deleted += stats.deleted
        report.conversions += conversions
        for key, count in stats.rows_by_day_level.items():
            report.rows_by_day_level[key] += count
        for key, amount in stats.spend_by_day_currency.items():
            report.spend_by_day_currency[key] += amount


@dataclass
class BreakdownReport:
    """What merging the breakdown tables did, per set."""

    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unchanged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deleted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rows_by_day: dict[tuple[str, dt.date], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[str, dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    failures: dict[str, str] = field(default_factory=dict)  # organization -> why


def normalize_breakdowns(
    engine: sa.Engine,
    organization_id: str,
    ad_account_ids: Sequence[str],
    breakdowns: Sequence[str],
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: BreakdownReport,
) -> None:
    """Rebuild the organization's breakdown tables of these ad accounts from the raw rows: each window
    in one transaction, every set together, as `normalize_organization` does for the daily spend."""
    for start, end in windows(since, until, window_days):
        try:
            with engine.begin() as conn:
                now = utcnow()
                merged = {
                    name: breakdown_store.refresh_breakdown(
                        conn, organization_id, ad_account_ids, name, start, end, now
                    )
                    for name in breakdowns
                }
        except ORGANIZATION_ERRORS as exc:
            reason = str(exc) if isinstance(exc, MetaspendError) else f"{type(exc).__name__}: {exc}"
            report.failures[organization_id] = redact(f"organization {organization_id}, {start}..{end}: {reason}")
            log.error("%s", report.failures[organization_id])
            return
        for name, stats in merged.items():
            report.written[name] += stats.written
            report.unchanged[name] += stats.staged - stats.written
            report.deleted[name] += stats.deleted
            for (day, _level), count in stats.rows_by_day_level.items():
                report.rows_by_day[(name, day)] += count
            for (day, currency), amount in stats.spend_by_day_currency.items():
                report.spend_by_day_currency[(name, day, currency)] += amount
