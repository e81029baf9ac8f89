"""`meta_reach_weekly` and `meta_reach_monthly`: how many people the ads reached over a week (Monday to
Sunday) or a calendar month, and how often, per object at the levels of META_REACH_LEVELS.

Reach is exactly what Meta counts for the whole period at that level: one request per period, level and
ad account (`time_range` = the period, `time_increment=all_days`), never a sum of days or of children,
which would count a person once per day or per ad. A period not over yet is fetched up to yesterday
(UTC, the last daily partition) and written as it stands; its partition runs again as the period goes
on (the reach schedules refresh the current week and month, and the previous ones within the
restatement lookback) and rewrites it. Meta keeps unique counts for 13 months: an older period is
refused before any request, naming the first day it could start on.
"""

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import dagster as dg

from metaspend_pipeline import ingest
from metaspend_pipeline.defs.common.config import (
    ORGANIZATIONS_FAILED,
    OWNERS,
    TAGS,
    MetaSpendConfig,
    organizations_to_fetch,
)
from metaspend_pipeline.defs.common.metadata import fetch_metadata, record_run_level, table_schema
from metaspend_pipeline.defs.common.partitions import (
    meta_spend_backfill_policy,
    month_partitions,
    partition_dates,
    period_last_day,
    week_partitions,
)
from metaspend_pipeline.defs.common.resources import MetaAdsResource
from metaspend_pipeline.errors import ORGANIZATION_ERRORS, MetaspendError
from metaspend_pipeline.meta.lookback import UNIQUE_COUNTS
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import reach as reach_store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import REACH_TABLES

GROUP = "meta_reach"
REACH_KEYS = {period: dg.AssetKey(table.name) for period, table in REACH_TABLES.items()}


def periods(period: str, since: dt.date, until: dt.date) -> list[tuple[dt.date, dt.date]]:
    """The weeks (Monday to Sunday) or calendar months that hold a day of [since, until], each as (first
    day, last day)."""
    first = since - dt.timedelta(days=since.weekday()) if period == "week" else since.replace(day=1)
    out = []
    while first <= until:
        last = period_last_day(period, first)
        out.append((first, last))
        first = last + dt.timedelta(days=1)
    return out


def _reach(context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource, period: str) -> Any:
    wanted = periods(period, *partition_dates(context, UNIQUE_COUNTS, period=period))  # refuses past 13 months
    settings = Settings.from_env()
    yesterday = utcnow().date() - dt.timedelta(days=1)
    engine = meta.engine()
    organizations, only_ad_accounts, _ = organizations_to_fetch(context, config, meta)
    levels = settings.reach_levels
    failures: list[str] = []
    rows_by_period: dict[dt.date, int] = defaultdict(int)
    requests = 0
    reports = []
    for first, last in wanted:
        if first > yesterday:
            continue  # not begun yet: nothing to count
        end = min(last, yesterday)
        context.log.info(f"fetching reach of {first}..{end} at level {', '.join(levels)}")
        report = ingest.fetch_organizations(
            engine,
            organizations,
            meta.ad_accounts,
            meta.mark_needs_reauth,
            first,
            end,
            run_id=context.run.run_id,
            window_days=settings.fetch_window_days,
            concurrency=settings.fetch_concurrency,
            only_ad_accounts=only_ad_accounts,
            on_account_done=meta.log_stats,
            fetch=functools.partial(
                ingest.fetch_reach, period=period, period_start=first, period_end=end, levels=levels
            ),
            report_kind="reach",
        )
        reports.append(report)
        requests += report.stats.requests
        failures += [o.error or o.organization_id for o in report.failures]
        accounts: dict[str, list[str]] = defaultdict(list)
        for outcome in report.outcomes:
            if outcome.status == "OK" and outcome.ad_account_id:
                accounts[outcome.organization_id].append(outcome.ad_account_id)
        for organization_id, ad_accounts in sorted(accounts.items()):
            try:
                with engine.begin() as conn:
                    counts = reach_store.refresh_reach(conn, organization_id, ad_accounts, period, first, utcnow())
            except ORGANIZATION_ERRORS as exc:
                reason = str(exc) if isinstance(exc, MetaspendError) else f"{type(exc).__name__}: {exc}"
                failures.append(redact(f"organization {organization_id}, {period} of {first}: {reason}"))
                continue
            rows_by_period[first] += counts.written
    if reports and all(r.outcomes and len(r.failures) == len(r.outcomes) for r in reports):
        raise dg.Failure(description="every reach fetch failed: " + "; ".join(failures))
    key = REACH_KEYS[period]
    record_run_level(
        context,
        key,
        {
            **(fetch_metadata(reports[-1]) if reports else {}),
            "meta_requests": dg.MetadataValue.int(requests),
            "levels": dg.MetadataValue.text(", ".join(levels)),
            "periods": dg.MetadataValue.text(", ".join(f"{a}..{b}" for a, b in wanted)),
        },
    )
    return dg.MaterializeResult(
        asset_key=key,
        metadata={
            "dagster/column_schema": table_schema(REACH_TABLES[period], engine.dialect),
            "rows_written": dg.MetadataValue.int(sum(rows_by_period.values())),
            **({ORGANIZATIONS_FAILED: dg.MetadataValue.text("; ".join(failures))} if failures else {}),
        },
    )


_DESCRIPTION = (
    "Unique reach and frequency per organization, ad account, object (META_REACH_LEVELS: campaign and ad set "
    "by default) and {label}, as Meta counts them over the whole {period}: one request per {period}, level and "
    "ad account, never a sum of days or of children. Frequency is Meta's figure (impressions / reach). A "
    "{period} not over yet is written up to yesterday and rewritten as it goes on. Reach and frequency must "
    "not be summed across periods or objects. Meta keeps unique counts for 13 months."
)


@dg.asset(
    name="meta_reach_weekly",
    partitions_def=week_partitions,
    backfill_policy=meta_spend_backfill_policy,
    pool="meta_api",
    group_name=GROUP,
    kinds={"meta", "python", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version="1",
    description=_DESCRIPTION.format(label="week (Monday to Sunday, in the ad account's days)", period="week"),
    metadata={"dagster/table_name": REACH_TABLES["week"].name},
)
def meta_reach_weekly(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource
) -> Iterator[Any]:
    yield _reach(context, config, meta, "week")


@dg.asset(
    name="meta_reach_monthly",
    partitions_def=month_partitions,
    backfill_policy=meta_spend_backfill_policy,
    pool="meta_api",
    group_name=GROUP,
    kinds={"meta", "python", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version="1",
    description=_DESCRIPTION.format(label="calendar month", period="month"),
    metadata={"dagster/table_name": REACH_TABLES["month"].name},
)
def meta_reach_monthly(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource
) -> Iterator[Any]:
    yield _reach(context, config, meta, "month")
