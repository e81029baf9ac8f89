"""`meta_conversions_daily`: Meta's `actions` and `action_values`, rebuilt from the raw rows.

The raw rows keep the lists as Meta sent them (validated at fetch time); a scope (an
organization's ad accounts over a range of days) is replaced in the spend merge's transaction:
one DELETE of the scope's rows (a range of the (ad account, date) index), then the scope's raw
rows are read in batches and each batch's conversions are bulk-loaded (COPY on PostgreSQL) before
the next is read, so memory stays at one batch and the cost is linear in the rows.

The caller turns a raw row's lists into rows (`meta.client.parse_conversions`, the package's one
parser): this module knows SQL, not Meta's shapes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metaspend_pipeline.storage.bulk import load_rows
from metaspend_pipeline.storage.locks import lock_organization
from metaspend_pipeline.storage.schema import CONVERSION_LEVELS, meta_conversions_daily, meta_raw_insights

READ_BATCH = 5000
COLUMNS = (
    "organization_id",
    "date",
    "level",
    "ad_account_id",
    "campaign_id",
    "adset_id",
    "ad_id",
    "action_type",
    "attribution_window",
    "currency",
    "count",
    "value",
    "updated_at",
)


@dataclass(frozen=True)
class RawActions:
    """One raw row's keys and its `actions` / `action_values` lists (None where Meta sent none)."""

    ad_account_id: str
    level: str
    date: dt.date
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    currency: str
    row: dict[str, Any]


# (action type, attribution window, count, value) of one raw row
ConversionValues = tuple[str, str, int | None, Decimal | None]


def refresh_conversions(
    conn: sa.Connection,
    organization_id: str,
    ad_account_ids: Sequence[str],
    since: dt.date,
    until: dt.date,
    now: dt.datetime,
    conversions_of: Callable[[RawActions], Iterable[ConversionValues]],
) -> int:
    """Make the scope's `meta_conversions_daily` rows those of its raw rows, in the caller's
    transaction under the organization's lock; returns the rows written."""
    lock_organization(conn, organization_id)
    t, r = meta_conversions_daily, meta_raw_insights
    accounts = list(ad_account_ids)
    conn.execute(
        t.delete()
        .where(t.c.organization_id == organization_id)
        .where(t.c.ad_account_id.in_(accounts))
        .where(t.c.date.between(since, until))
    )
    query = (
        sa.select(
            r.c.ad_account_id,
            r.c.level,
            r.c.date,
            r.c.campaign_id,
            r.c.adset_id,
            r.c.ad_id,
            r.c.currency,
            r.c.row["actions"].label("actions"),
            r.c.row["action_values"].label("action_values"),
        )
        .where(r.c.organization_id == organization_id)
        .where(r.c.ad_account_id.in_(accounts))
        .where(r.c.level.in_(CONVERSION_LEVELS))
        .where(r.c.date.between(since, until))
    )
    written = 0
    result = conn.execute(query, execution_options={"stream_results": True, "yield_per": READ_BATCH})
    for batch in result.partitions():
        # the batch is read before it is loaded: a COPY cannot run while a fetch is under way
        rows = list(_rows(organization_id, batch, now, conversions_of))
        if rows:
            written += load_rows(conn, t, COLUMNS, rows)
    return written


def _rows(
    organization_id: str,
    batch: Sequence[sa.Row],
    now: dt.datetime,
    conversions_of: Callable[[RawActions], Iterable[ConversionValues]],
) -> Iterator[tuple[Any, ...]]:
    for b in batch:
        if b.actions is None and b.action_values is None:
            continue
        raw = RawActions(
            b.ad_account_id,
            b.level,
            b.date,
            b.campaign_id,
            b.adset_id,
            b.ad_id,
            b.currency,
            {k: v for k, v in (("actions", b.actions), ("action_values", b.action_values)) if v is not None},
        )
        for action_type, window, count, value in conversions_of(raw):
            yield (
                organization_id,
                b.date,
                b.level,
                b.ad_account_id,
                b.campaign_id,
                b.adset_id,
                b.ad_id,
                action_type,
                window,
                b.currency,
                count,
                value,
                now,
            )
