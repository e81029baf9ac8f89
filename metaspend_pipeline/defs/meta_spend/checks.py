"""The checks of Meta's spend. They run after their asset in the same run, over the run's partition range.

- `meta_raw_insights`: every organization fetched. A failed organization fails the run, naming it,
  after every other organization's data has been written through all the assets. And
  `meta_api_version_current`, which the asset itself yields (it alone knows what Meta said in the run):
  WARN when META_API_VERSION expires within 60 days or Meta warned about it, ERROR once it expired.
- `meta_spend_daily`: every organization written; levels reconcile (ad = ad set = campaign = account
  total, per ad account and day, within one cent); no NULL keys for the level; one currency per ad
  account; and yesterday's partition materialized (`yesterday_loaded`), beside the asset's freshness
  policy (METASPEND_FRESHNESS_DEADLINE_CRON), which a backfill of old days alone would satisfy. And
  three warnings (`anomalies`): an ad account that stopped spending, a day's spend far from its
  trailing median, a day loaded for some ad accounts of an organization and not for others.
"""

import datetime as dt
from collections.abc import Callable, Iterator

import dagster as dg
import sqlalchemy as sa

from metaspend_pipeline import anomalies, validation
from metaspend_pipeline.defs.common.checks import (
    EVERY_ORGANIZATION_WRITTEN,
    CheckRange,
    check_range,
    check_result,
    every_organization_written_results,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.meta import versions
from metaspend_pipeline.meta.lookback import INSIGHTS
from metaspend_pipeline.settings import AnomalySettings, SettingsError
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import meta_spend_daily as spend_table

RAW = dg.AssetKey("meta_raw_insights")
SPEND = dg.AssetKey("meta_spend_daily")
API_VERSION_CURRENT = "meta_api_version_current"
api_version_check_spec = dg.AssetCheckSpec(
    API_VERSION_CURRENT,
    asset=RAW,
    description=f"Warns when META_API_VERSION expires within {versions.WARN_DAYS} days (Meta's published dates, "
    "meta/versions.py) or when Meta answered the run's calls with an X-Ad-Api-Version-Warning (quoted); an "
    "error once the version is past its expiry. Yielded by meta_raw_insights after its fetch.",
)


def api_version_result(version: str, meta_warnings: list[str], today: dt.date) -> dg.AssetCheckResult:
    """The verdict on the version in use: the table's dates, and Meta's own words in this run."""
    status = versions.version_status(version, today)
    warned = bool(meta_warnings) or status.level != "ok"
    lines = [f"Marketing API {version} (META_API_VERSION): {status.reason}"]
    lines += [f'Meta answered this run\'s calls with X-Ad-Api-Version-Warning: "{text}"' for text in meta_warnings]
    if warned:
        lines.append('Move META_API_VERSION to a version Meta serves: README, "Meta API version"')
    metadata: dict[str, dg.MetadataValue] = {
        "meta_api_version": dg.MetadataValue.text(version),
        "expires": dg.MetadataValue.text(
            f"{status.expires}{' (estimated)' if status.estimated else ''}" if status.expires else "unknown"
        ),
        "version_table": dg.MetadataValue.text(versions.SOURCE),
    }
    days_left = status.days_left(today)
    if days_left is not None:
        metadata["days_left"] = dg.MetadataValue.int(days_left)
    if meta_warnings:
        metadata["meta_api_version_warning"] = dg.MetadataValue.text("\n".join(meta_warnings))
    return dg.AssetCheckResult(
        check_name=API_VERSION_CURRENT,
        asset_key=RAW,
        passed=not warned,
        severity=dg.AssetCheckSeverity.ERROR if status.level == "error" else dg.AssetCheckSeverity.WARN,
        description="\n".join(lines),
        metadata=metadata,
    )


@dg.asset_check(
    asset=RAW,
    name="every_organization_fetched",
    description="Fails the run, naming them, when organizations or ad accounts could not be fetched "
    "(expired token, Meta error); the others' data is written all the same.",
)
def every_organization_fetched(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        outcomes = raw_store.fetches_of_run(conn, context.op_execution_context.run_id)
    failures = [o for o in outcomes if o.status == "FAILED"]
    if failures:
        raise dg.Failure(
            description="Meta could not be read for: " + "; ".join(o.error or o.organization_id for o in failures),
            metadata={
                "organizations_failed": dg.MetadataValue.text(", ".join(sorted({o.organization_id for o in failures}))),
                "fetches_failed": dg.MetadataValue.int(len(failures)),
            },
        )
    return dg.AssetCheckResult(
        passed=True,
        description=f"{len(outcomes)} ad account fetch(es) in this run, none failed",
        metadata={"fetches": dg.MetadataValue.int(len(outcomes))},
    )


@dg.asset_check(
    asset=SPEND,
    name=EVERY_ORGANIZATION_WRITTEN,
    description="Fails the run, naming them, when organizations could not be written by this step; "
    "the others' rows are written all the same.",
)
def meta_spend_daily_written(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    yield from every_organization_written_results(context, [SPEND])


_SPEND_CHECKS = {
    "levels_reconcile": (validation.reconcile_levels, "ad = ad set = campaign = account total, per ad account and day"),
    "keys_match_level": (validation.missing_keys, "no NULL id for the row's level, no id of a lower level"),
    "one_currency_per_ad_account": (validation.currencies_per_ad_account, "one currency per ad account, Meta's"),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=SPEND, description=description)
        for name, (_, description) in _SPEND_CHECKS.items()
    ],
    can_subset=True,
    name="meta_spend_daily_checks",
)
def meta_spend_daily_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    since, until = check_range(context, config, INSIGHTS)
    with warehouse.engine().connect() as conn:
        for name, (check, _) in _SPEND_CHECKS.items():
            key = dg.AssetCheckKey(SPEND, name)
            if key in context.selected_asset_check_keys:
                yield check_result(name, SPEND, check(conn, since, until), since, until)


_ANOMALY_CHECKS: dict[str, tuple[Callable[..., anomalies.Anomalies], str]] = {
    "no_stopped_spending": (
        anomalies.stopped_spending,
        "warns on an ad account that spent on each of the METASPEND_ANOMALY_STOPPED_DAYS (7) days before a "
        "loaded day and nothing on it",
    ),
    "spend_near_trailing_median": (
        anomalies.spend_outliers,
        "warns on a day's spend per ad account above METASPEND_ANOMALY_SPIKE_RATIO (5) x, or below "
        "METASPEND_ANOMALY_DROP_RATIO (0.2) x, the median of its days with spend among the "
        "METASPEND_ANOMALY_MEDIAN_DAYS (28) days before (at least METASPEND_ANOMALY_MIN_HISTORY_DAYS (7) of them)",
    ),
    "every_ad_account_loaded": (
        anomalies.missing_ad_accounts,
        "warns on a day loaded for some ad accounts of an organization and not for others",
    ),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=SPEND, description=description)
        for name, (_, description) in _ANOMALY_CHECKS.items()
    ],
    can_subset=True,
    name="meta_spend_anomaly_checks",
)
def meta_spend_anomaly_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """Warnings, never errors: spend that adds up but looks wrong. Thresholds are read from the
    environment now, so a change applies to the next run without reloading the definitions."""
    since, until = check_range(context, config, INSIGHTS)
    try:
        settings = AnomalySettings.from_env()
    except SettingsError as exc:
        raise dg.Failure(description=str(exc)) from None
    with warehouse.engine().connect() as conn:
        for name, (check, _) in _ANOMALY_CHECKS.items():
            if dg.AssetCheckKey(SPEND, name) in context.selected_asset_check_keys:
                found = check(conn, since, until, settings)
                yield check_result(
                    name,
                    SPEND,
                    found.findings,
                    since,
                    until,
                    severity=dg.AssetCheckSeverity.WARN,
                    figures=found.figures,
                )


@dg.asset_check(
    asset=SPEND,
    name="yesterday_loaded",
    description="Passes when yesterday's partition (UTC) of meta_spend_daily is materialized: the asset's "
    "freshness policy looks at the latest materialization of any day, which a backfill of old days renews.",
)
def yesterday_loaded(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    yesterday = utcnow().date() - dt.timedelta(days=1)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SPEND, asset_partitions=[yesterday.isoformat()]), limit=1
    ).records
    with warehouse.engine().connect() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).where(spend_table.c.date == yesterday))
    metadata: dict[str, dg.MetadataValue] = {
        "partition": dg.MetadataValue.text(yesterday.isoformat()),
        "rows": dg.MetadataValue.int(rows or 0),
    }
    if records:
        metadata["loaded_at"] = dg.MetadataValue.timestamp(records[0].timestamp)
    return dg.AssetCheckResult(
        passed=bool(records),
        severity=dg.AssetCheckSeverity.WARN,
        description=f"yesterday's partition {yesterday} is "
        + ("materialized" if records else "not materialized: run meta_spend_job for it"),
        metadata=metadata,
    )
