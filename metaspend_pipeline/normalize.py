"""`meta_raw_insights` -> `meta_spend_daily`: Meta's rows parsed once more and merged per organization.

The same parser that validated the rows at fetch time turns them into typed rows (currency from
the ad account's `account_currency`, `Decimal` spend). Each organization's window is replaced
in one transaction, all its ad accounts and levels together, so a reader never sees a day of an
organization half-written.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.ingest import windows
from metaspend_pipeline.meta.client import parse_insight_row
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import spend as spend_store

SPEND_LEVELS = ("CAMPAIGN", "ADSET", "AD")


@dataclass
class NormalizeReport:
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    rows_by_day_level: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day_level.values())


def _spend_rows(
    raw_rows: Iterator[raw_store.RawRow], organization_id: str, since: dt.date, until: dt.date, report: NormalizeReport
) -> Iterator[dict[str, Any]]:
    seen: set[tuple[object, ...]] = set()
    for raw in raw_rows:
        row = parse_insight_row(raw.row, raw.ad_account_id, raw.level.lower(), since, until)
        key = (row.date, raw.level, row.campaign_id, row.adset_id, row.ad_id)
        if key in seen:
            raise MetaDataError(
                f"organization {organization_id}, ad account {raw.ad_account_id}, {row.date}: Meta returned "
                f"{raw.level} row campaign {row.campaign_id}, ad set {row.adset_id}, ad {row.ad_id} twice",
                ad_account_id=raw.ad_account_id,
            )
        seen.add(key)
        report.rows_by_day_level[(row.date, raw.level)] += 1
        if raw.level == "CAMPAIGN":
            report.spend_by_day_currency[(row.date, row.currency)] += row.spend
        yield {
            "organization_id": organization_id,
            "provider": raw.provider,
            "date": row.date,
            "level": raw.level,
            "ad_account_id": raw.ad_account_id,
            "campaign_id": row.campaign_id,
            "adset_id": row.adset_id,
            "ad_id": row.ad_id,
            "currency": row.currency,
            "spend": row.spend,
            "impressions": row.impressions,
            "clicks": row.clicks,
        }


def normalize_organization(
    engine: sa.Engine,
    organization_id: str,
    ad_account_ids: Sequence[str],
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: NormalizeReport,
) -> None:
    """Rebuild the organization's `meta_spend_daily` rows of these ad accounts from the raw rows."""
    for start, end in windows(since, until, window_days):
        with engine.begin() as conn:
            raw_rows = raw_store.iter_raw_insights(conn, organization_id, ad_account_ids, SPEND_LEVELS, start, end)
            stats = spend_store.replace_spend(
                conn,
                [spend_store.SpendScope(organization_id, account, start, end) for account in ad_account_ids],
                _spend_rows(raw_rows, organization_id, start, end, report),
            )
        report.written += stats.written
        report.unchanged += stats.unchanged
        report.deleted += stats.deleted
