"""`meta_spend_by_age_gender`, `meta_spend_by_country`, `meta_spend_by_placement`: who saw the ads, day by
day, in one step that fetches Meta's breakdowns and merges them.

Fetched with the daily spend's machinery (`ingest.fetch_organizations`): the same pacing, retries,
async report runs, windows of META_FETCH_WINDOW_DAYS, threads per ad account, per-organization
isolation and locks; one request series per ad account, level (META_BREAKDOWN_LEVELS) and set
(META_BREAKDOWNS) for a whole window, never one per day. In a run that also fetched the daily insights,
only what that fetch read is broken down (an organization whose token was refused there is not tried
again). A set left out of META_BREAKDOWNS is not fetched, and its table is not materialized.
"""

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import dagster as dg

from metaspend_pipeline import ingest, normalize
from metaspend_pipeline.defs.common.config import (
    ORGANIZATIONS_FAILED,
    OWNERS,
    TAGS,
    MetaSpendConfig,
    fetched_in_run,
    organizations_to_fetch,
)
from metaspend_pipeline.defs.common.metadata import (
    add_daily_metadata,
    fetch_metadata,
    money_metadata,
    record_run_level,
    table_schema,
)
from metaspend_pipeline.defs.common.partitions import (
    days,
    meta_spend_backfill_policy,
    meta_spend_partitions,
    partition_dates,
)
from metaspend_pipeline.defs.common.resources import MetaAdsResource
from metaspend_pipeline.meta.lookback import INSIGHTS
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.schema import BREAKDOWN_TABLES

GROUP = "meta_breakdowns"
BREAKDOWN_KEYS = {name: dg.AssetKey(table.name) for name, table in BREAKDOWN_TABLES.items()}
_LABEL = {"age_gender": "age and gender", "country": "country", "placement": "placement"}


def _spec(name: str) -> dg.AssetSpec:
    fields = ", ".join(BREAKDOWN_SETS[name])
    return dg.AssetSpec(
        BREAKDOWN_KEYS[name],
        deps=["meta_spend_daily"],  # after it: the checks compare with it
        partitions_def=meta_spend_partitions,
        group_name=GROUP,
        kinds={"meta", "python", "sql"},
        owners=OWNERS,
        tags=TAGS,
        code_version="1",
        skippable=True,  # not materialized while the set is left out of META_BREAKDOWNS
        description=(
            f"Spend, impressions and clicks per organization, day, object and {_LABEL[name]} ({fields}), from "
            f"Meta's insights with `breakdowns={','.join(BREAKDOWN_SETS[name])}`, at the levels of "
            "META_BREAKDOWN_LEVELS (campaign by default). The rows of an object's day add up to its "
            "meta_spend_daily row (the check adds_up_to_meta_spend_daily). Raw rows are kept in "
            "meta_raw_breakdowns; each organization's days are merged in one transaction, so a rerun gives "
            "identical rows."
        ),
        metadata={"dagster/table_name": BREAKDOWN_TABLES[name].name},
    )


@dg.multi_asset(
    name="meta_breakdowns",
    specs=[_spec(name) for name in BREAKDOWN_SETS],
    can_subset=True,
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
    pool="meta_api",
)
def meta_breakdowns(context: dg.AssetExecutionContext, config: MetaSpendConfig, meta: MetaAdsResource) -> Iterator[Any]:
    since, until = partition_dates(context, INSIGHTS)  # refuses a range older than Meta serves
    settings = Settings.from_env()
    sets = [n for n in BREAKDOWN_SETS if BREAKDOWN_KEYS[n] in context.selected_asset_keys and n in settings.breakdowns]
    off = [n for n in BREAKDOWN_SETS if BREAKDOWN_KEYS[n] in context.selected_asset_keys and n not in sets]
    if off:
        context.log.info(f"not fetched (not in META_BREAKDOWNS): {', '.join(off)}")
    if not sets:
        return
    engine = meta.engine()
    with engine.connect() as conn:
        fetched = fetched_in_run(conn, context.run.run_id)
    if fetched is not None:  # what this run's insights fetch read: the same organizations and ad accounts
        organizations = sorted(o for o, accounts in fetched.items() if accounts)
        only = sorted({a for accounts in fetched.values() for a in accounts})
    else:
        organizations, only_ad_accounts, _ = organizations_to_fetch(context, config, meta)
        only = only_ad_accounts
    levels = settings.breakdown_levels
    context.log.info(
        f"fetching breakdowns {', '.join(sets)} at level {', '.join(levels)} of {len(organizations)} "
        f"organization(s), {since}..{until}"
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
        only_ad_accounts=only,
        on_account_done=meta.log_stats,
        fetch=functools.partial(
            ingest.fetch_breakdowns,
            since=since,
            until=until,
            window_days=settings.fetch_window_days,
            breakdowns=sets,
            levels=levels,
        ),
        report_kind="breakdowns",
    )
    if report.outcomes and len(report.failures) == len(report.outcomes):
        raise dg.Failure(
            description="every breakdown fetch failed: " + "; ".join(o.error or "" for o in report.failures),
            metadata={ORGANIZATIONS_FAILED: ", ".join(report.failed_organizations)},
        )
    merged = normalize.BreakdownReport()
    fetched_accounts: dict[str, list[str]] = defaultdict(list)
    for outcome in report.outcomes:
        if outcome.status == "OK" and outcome.ad_account_id:
            fetched_accounts[outcome.organization_id].append(outcome.ad_account_id)
    for organization_id, accounts in sorted(fetched_accounts.items()):
        normalize.normalize_breakdowns(
            engine, organization_id, accounts, sets, since, until, settings.fetch_window_days, merged
        )
    failures = [o.error or o.organization_id for o in report.failures] + list(merged.failures.values())
    run_level = {
        **fetch_metadata(report),
        "breakdowns": dg.MetadataValue.text(", ".join(sets)),
        "levels": dg.MetadataValue.text(", ".join(levels)),
        "partition_range": dg.MetadataValue.text(f"{since}..{until}"),
    }
    for name in sets:
        key = BREAKDOWN_KEYS[name]
        record_run_level(
            context,
            key,
            {
                **run_level,
                "rows_written": dg.MetadataValue.int(merged.written[name]),
                "rows_unchanged": dg.MetadataValue.int(merged.unchanged[name]),
                "rows_deleted": dg.MetadataValue.int(merged.deleted[name]),
            },
        )
        add_daily_metadata(context, key, days(since, until), _per_day(merged, name))
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/column_schema": table_schema(BREAKDOWN_TABLES[name], engine.dialect),
                **({ORGANIZATIONS_FAILED: dg.MetadataValue.text("; ".join(failures))} if failures else {}),
            },
        )


def _per_day(merged: normalize.BreakdownReport, name: str) -> dict[dt.date, dict[str, Any]]:
    out: dict[dt.date, dict[str, Any]] = defaultdict(dict)
    for (set_name, day), count in merged.rows_by_day.items():
        if set_name == name:
            out[day]["dagster/row_count"] = dg.MetadataValue.int(count)
    spend: dict[dt.date, dict[str, Any]] = defaultdict(dict)
    for (set_name, day, currency), amount in merged.spend_by_day_currency.items():
        if set_name == name:
            spend[day][currency] = amount
    for day, amounts in spend.items():
        out[day].update(money_metadata("spend", amounts))
    return out
