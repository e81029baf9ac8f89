"""`meta_roas_by_campaign`, `meta_roas_by_adset`, `meta_roas_by_ad`: leads, sales, revenue, spend
and the dashboard's ratios per organization, day and group, computed in one step."""

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa

from metaspend_pipeline import roas
from metaspend_pipeline.defs.common.config import (
    GROUP,
    ORGANIZATIONS_FAILED,
    OWNERS,
    TAGS,
    MetaSpendConfig,
    fetched_in_run,
    run_shard,
)
from metaspend_pipeline.defs.common.metadata import add_daily_metadata, money_metadata, record_run_level, table_schema
from metaspend_pipeline.defs.common.partitions import (
    days,
    meta_spend_backfill_policy,
    meta_spend_partitions,
    partition_dates,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import roas as roas_store
from metaspend_pipeline.storage.money import money_sum, read_money_sum
from metaspend_pipeline.storage.schema import ROAS_GROUPS, ROAS_TABLES

ROAS_KEYS = {group: dg.AssetKey(f"meta_roas_by_{group}") for group in ROAS_GROUPS}
_LABEL = {"campaign": "campaign", "adset": "ad set", "ad": "ad"}


def _spec(group: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        ROAS_KEYS[group],
        deps=[
            "meta_spend_daily",
            "fx_rates_daily",
            "lead",
            "sale",
        ],  # meta_conversions_daily: written by meta_spend_daily
        partitions_def=meta_spend_partitions,
        group_name=GROUP,
        kinds={"python", "sql"},
        owners=OWNERS,
        tags=TAGS,
        code_version="3",
        description=(
            f"ROAS by {_LABEL[group]}: one row per (organization_id, date, {group}_id) with leads_count, "
            "sales_count, revenue, spend, avg_ticket, conversion_rate and roas. Spend from meta_spend_daily at "
            f"{group.upper()} level; a lead counts on its creation day in its ad account's time zone and its "
            "sales on the lead's day. Ratios are NULL where their denominator is 0, roas also when revenue is "
            "0; sales in another currency than the spend's are not mixed in (revenue_currency_mismatch). "
            "spend_reporting, revenue_reporting and roas_reporting: the same day in the organization's reporting "
            "currency, each currency converted at fx_rates_daily's rate of the day and rounded before "
            "summing, so mixed-currency groups get one ROAS; rounded to the reporting currency's minor units "
            "(whole yen for JPY). A rate fx_rates_daily lacks (ECB outage, no feed, not materialized) leaves the "
            "reporting amounts NULL on the rows that need it alone (rows_without_reporting_amounts, missing_rates): "
            "the CRM's and Meta's columns never need a rate. Beside the CRM's view, Meta's own: meta_purchases, "
            "meta_purchase_value (omni_purchase, else purchase, else offsite_conversion.fb_pixel_purchase, under "
            "the ad account's attribution setting, from meta_conversions_daily) and meta_roas."
        ),
        metadata={"dagster/table_name": f"meta_roas_by_{group}"},
    )


@dg.multi_asset(
    name="meta_roas",
    specs=[_spec(group) for group in ROAS_GROUPS],
    can_subset=True,
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
)
def meta_roas(
    context: dg.AssetExecutionContext, config: MetaSpendConfig, warehouse: WarehouseResource
) -> Iterator[Any]:
    since, until = partition_dates(context)
    groups = [g for g in ROAS_GROUPS if ROAS_KEYS[g] in context.selected_asset_keys]
    engine = warehouse.engine()
    with engine.connect() as conn:
        fetched = fetched_in_run(conn, context.run.run_id)
        organizations = config.organization_ids() or (
            sorted(fetched) if fetched is not None else roas_store.roas_organizations(conn)
        )
    shard = run_shard(context, config)
    if shard is not None:
        organizations = shard.select(organizations)
    report = roas.RoasReport()
    window_days = Settings.from_env().fetch_window_days
    for organization_id in organizations:
        roas.refresh_organization(engine, organization_id, since, until, window_days, report, groups)
    failed = {ORGANIZATIONS_FAILED: dg.MetadataValue.text("; ".join(report.failures.values()))}
    lacking = {o: roas.describe_missing(m) for o, m in sorted(report.missing_rates.items()) if m}
    missing = {"missing_rates": dg.MetadataValue.text("; ".join(f"{o}: {m}" for o, m in lacking.items()))}
    missing = missing if lacking else {}
    for group in groups:
        key = ROAS_KEYS[group]
        record_run_level(
            context,
            key,
            {
                "organizations": dg.MetadataValue.int(len(organizations)),
                "rows_in_run": dg.MetadataValue.int(report.rows_by_group[group]),
                "currency_mismatches": dg.MetadataValue.int(report.mismatches_by_group[group]),
                "rows_without_reporting_amounts": dg.MetadataValue.int(report.unconverted_by_group[group]),
                "partition_range": dg.MetadataValue.text(f"{since}..{until}"),
                **missing,
            },
        )
        with engine.connect() as conn:
            money = money_by_day(conn, group, organizations, since, until)
        per_day: dict[dt.date, dict[str, Any]] = defaultdict(dict)
        for (day, g), count in report.rows_by_day_group.items():
            if g == group:
                per_day[day]["dagster/row_count"] = dg.MetadataValue.int(count)
        for day, by_currency in money.items():
            per_day[day].update(money_metadata("spend", {c: m[0] for c, m in by_currency.items()}))
            per_day[day].update(money_metadata("revenue", {c: m[1] for c, m in by_currency.items()}))
            per_day[day].update(
                {
                    f"roas_{currency}": dg.MetadataValue.float(float(revenue / spend))
                    for currency, (spend, revenue) in sorted(by_currency.items())
                    if spend
                }
            )
        add_daily_metadata(context, key, days(since, until), per_day)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/column_schema": table_schema(ROAS_TABLES[group], engine.dialect),
                **(failed if report.failures else {}),
            },
        )


def money_by_day(
    conn: sa.Connection, group: str, organizations: Sequence[str], since: dt.date, until: dt.date
) -> dict[dt.date, dict[str, tuple[Decimal, Decimal]]]:
    """Each day's spend and revenue per currency over the run's organizations, summed exactly in one
    query (a revenue left NULL for a currency mismatch counts as none)."""
    t = ROAS_TABLES[group]
    query = (
        sa.select(
            t.c.date,
            t.c.currency,
            money_sum(conn, t.c.spend),
            money_sum(conn, t.c.revenue),
        )
        .where(t.c.date.between(since, until), t.c.organization_id.in_(list(organizations)))
        .group_by(t.c.date, t.c.currency)
    )
    out: dict[dt.date, dict[str, tuple[Decimal, Decimal]]] = defaultdict(dict)
    for day, currency, spend, revenue in conn.execute(query):
        out[day][currency] = (read_money_sum(spend), read_money_sum(revenue))
    return out
