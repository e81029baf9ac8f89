"""`meta_spend_daily`: Meta's rows normalized, one per (organization, day, level, object)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from metaspend_pipeline import normalize
from metaspend_pipeline.assets.common import (
    GROUP,
    ORGANIZATIONS_FAILED,
    OWNERS,
    TAGS,
    MetaSpendConfig,
    add_daily_metadata,
    daily_metadata,
    fetched_in_run,
    range_summary,
    record_run_level,
    run_shard,
    table_schema,
)
from metaspend_pipeline.assets.raw import meta_raw_insights
from metaspend_pipeline.partitions import days, meta_spend_backfill_policy, meta_spend_partitions, partition_dates
from metaspend_pipeline.resources import WarehouseResource
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.schema import meta_spend_daily as spend_table


@dg.asset(
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
    deps=[meta_raw_insights],
    group_name=GROUP,
    kinds={"python", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version="2",
    description=(
        "Daily spend, impressions and clicks per organization at CAMPAIGN, ADSET and AD level, in the ad "
        "account's currency and dates, money as exact decimals. Rebuilt from meta_raw_insights: each "
        "organization's days are merged in one transaction (set-based SQL from the raw rows), so a rerun gives "
        "identical rows and rows of objects Meta no longer returns are removed. One organization's failure "
        "does not stop the others; the check every_organization_written names it. Meta's conversions "
        "(actions and action_values per action type and attribution window) are rebuilt into "
        "meta_conversions_daily in the same transactions."
    ),
    metadata={"dagster/table_name": "meta_spend_daily"},
)
def meta_spend_daily(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, warehouse: WarehouseResource
) -> Iterator[Any]:
    since, until = partition_dates(context)
    engine = warehouse.engine()
    with engine.connect() as conn:
        scope = fetched_in_run(conn, context.run.run_id)
        if scope is None:
            scope = raw_store.raw_scopes(conn, since, until, config.organization_ids())
    shard = run_shard(context, config)
    if shard is not None:
        scope = {o: accounts for o, accounts in scope.items() if shard.owns(o)}
    wanted = set(config.ad_account_ids() or ())
    report = normalize.NormalizeReport()
    window_days = Settings.from_env().fetch_window_days
    for organization_id, accounts in scope.items():
        accounts = [a for a in accounts if not wanted or a in wanted]
        if accounts:
            normalize.normalize_organization(engine, organization_id, accounts, since, until, window_days, report)

    record_run_level(
        context,
        context.asset_key,
        {
            "organizations": dg.MetadataValue.int(len(scope)),
            "totals": range_summary(report.rows_by_day_level, report.spend_by_day_currency),
            "rows_written": dg.MetadataValue.int(report.written),
            "rows_unchanged": dg.MetadataValue.int(report.unchanged),
            "rows_deleted": dg.MetadataValue.int(report.deleted),
            "conversion_rows_written": dg.MetadataValue.int(report.conversions),
            "partition_range": dg.MetadataValue.text(f"{since}..{until}"),
        },
    )
    add_daily_metadata(
        context,
        context.asset_key,
        days(since, until),
        daily_metadata(report.rows_by_day_level, report.spend_by_day_currency),
    )
    failed = {ORGANIZATIONS_FAILED: dg.MetadataValue.text("; ".join(report.failures.values()))}
    yield dg.MaterializeResult(
        metadata={
            "dagster/column_schema": table_schema(spend_table, engine.dialect),
            **(failed if report.failures else {}),
        }
    )
