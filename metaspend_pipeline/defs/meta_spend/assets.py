"""Meta's spend: `meta_raw_insights` (Meta's rows as received, for every connected organization's ad
accounts) and `meta_spend_daily` (those rows normalized, one per organization, day, level and object)."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from metaspend_pipeline import ingest, normalize
from metaspend_pipeline.defs.common.config import (
    GROUP,
    ORGANIZATIONS_FAILED,
    OWNERS,
    TAGS,
    MetaSpendConfig,
    fetched_in_run,
    organizations_to_fetch,
    run_shard,
)
from metaspend_pipeline.defs.common.metadata import (
    add_daily_metadata,
    daily_metadata,
    fetch_metadata,
    range_summary,
    record_run_level,
    table_schema,
)
from metaspend_pipeline.defs.common.partitions import (
    days,
    meta_spend_backfill_policy,
    meta_spend_partitions,
    partition_dates,
    spend_freshness_policy,
)
from metaspend_pipeline.defs.common.resources import MetaAdsResource, WarehouseResource
from metaspend_pipeline.defs.meta_spend.checks import api_version_check_spec, api_version_result
from metaspend_pipeline.meta.lookback import INSIGHTS
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import meta_raw_insights as raw_table
from metaspend_pipeline.storage.schema import meta_spend_daily as spend_table


@dg.asset(
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
    pool="meta_api",
    group_name=GROUP,
    kinds={"meta", "python", "sql"},
    owners=OWNERS,
    tags=TAGS,
    code_version="3",
    description=(
        "Meta's insight rows as received (JSON), per organization, ad account, level (account, campaign, "
        "ad set, ad) and day. A range is fetched with time_increment=1 in windows of META_FETCH_WINDOW_DAYS "
        "days (async report runs where large), archived and deleted objects included; each (organization, "
        "ad account, level, window) is replaced in one transaction. One organization's failure is recorded "
        "and does not stop the others; a rejected token marks its account NEEDS_REAUTH. META_FETCH_CONCURRENCY ad "
        "accounts are fetched at once; meta_wait_seconds (summed over the threads) against fetch_wall_seconds "
        "says how much of the time went to waiting on Meta (meta_wait_share of the threads' time). With a shard "
        "(run tag metaspend/shard or config shard, i/N), only that shard's organizations. A range starting "
        "before the first day Meta serves (37 months back) is refused before any request. meta_api_version "
        "says which Marketing API version the run used, meta_api_version_warning what Meta said of it."
    ),
    metadata={"dagster/table_name": "meta_raw_insights"},
    check_specs=[api_version_check_spec],
)
def meta_raw_insights(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource
) -> Iterator[Any]:
    since, until = partition_dates(context, INSIGHTS)
    engine = meta.engine()
    settings = Settings.from_env()
    organizations, only_ad_accounts, shard = organizations_to_fetch(context, config, meta)
    version = meta.api_settings.api_version
    context.log.info(
        f"fetching {len(organizations)} organization(s), {since}..{until}, "
        f"{settings.fetch_concurrency} ad account(s) at a time, Marketing API {version}"
        + (f", shard {shard}" if shard else "")
    )
    report = ingest.fetch_organizations(
        engine,
        organizations,
        meta.ad_accounts,
        meta.mark_needs_reauth,
        since,
        until,
        run_id=context.run.run_id,
        window_days=settings.fetch_window_days,
        concurrency=settings.fetch_concurrency,
        only_ad_accounts=only_ad_accounts,
        on_account_done=meta.log_stats,
    )
    for text in report.stats.version_warnings:
        context.log.warning(f"Meta warns about Marketing API {version} (META_API_VERSION): {text}")
    if only_ad_accounts and not report.outcomes:
        raise dg.Failure(
            f"ad account {', '.join(only_ad_accounts)} is not connected to "
            f"{'organization ' + ', '.join(organizations) if config.organizations else 'any organization'}"
        )
    if report.outcomes and len(report.failures) == len(report.outcomes):
        raise dg.Failure(
            description="every fetch failed: " + "; ".join(o.error or "" for o in report.failures),
            metadata={"organizations_failed": ", ".join(report.failed_organizations)},
        )

    run_level = {
        **fetch_metadata(report),
        "meta_wait_seconds": dg.MetadataValue.float(round(report.meta_wait_seconds, 3)),
        "meta_wait_share": dg.MetadataValue.float(round(report.meta_wait_share, 3)),
        "totals": range_summary(report.rows_by_day_level, report.spend_by_day_currency),
        "partition_range": dg.MetadataValue.text(f"{since}..{until}"),
        "meta_api_version": dg.MetadataValue.text(version),
    }
    if report.stats.version_warnings:
        run_level["meta_api_version_warning"] = dg.MetadataValue.text("\n".join(report.stats.version_warnings))
    if shard is not None:
        run_level["shard"] = dg.MetadataValue.text(str(shard))
    record_run_level(context, context.asset_key, run_level)
    per_day = daily_metadata(report.rows_by_day_level, report.spend_by_day_currency)
    add_daily_metadata(context, context.asset_key, days(since, until), per_day)
    yield dg.MaterializeResult(metadata={"dagster/column_schema": table_schema(raw_table, engine.dialect)})
    if api_version_check_spec.key in context.selected_asset_check_keys:
        yield api_version_result(version, report.stats.version_warnings, utcnow().date())


@dg.asset(
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
    deps=["meta_raw_insights"],
    group_name=GROUP,
    kinds={"python", "sql"},
    freshness_policy=spend_freshness_policy,
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
        "meta_conversions_daily in the same transactions. Like meta_raw_insights, it refuses a range starting "
        "before the first day Meta serves (37 months back): Meta's data older than that cannot be fetched again."
    ),
    metadata={"dagster/table_name": "meta_spend_daily"},
)
def meta_spend_daily(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, warehouse: WarehouseResource
) -> Iterator[Any]:
    since, until = partition_dates(context, INSIGHTS)
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
