"""Asset checks: they run after their asset in the same run, over the run's partition range.

- `meta_raw_insights`: every organization fetched. A failed organization fails the run, naming it,
  after every other organization's data has been written through all the assets.
- `meta_spend_daily`: levels reconcile (ad = ad set = campaign = account total, per ad account
  and day, within one cent); no NULL keys for the level; one currency per ad account; and
  yesterday's partition materialized (`yesterday_loaded`), beside the asset's freshness policy
  (METASPEND_FRESHNESS_DEADLINE_CRON), which a backfill of old days alone would satisfy. And three
  warnings (`anomalies`): an ad account that stopped spending, a day's spend far from its trailing
  median, a day loaded for some ad accounts of an organization and not for others.
- `fx_rates_daily`: every currency the pipeline needs has a rate on every day of the range.
- each ROAS table: no group whose sales are in another currency than its spend.
- `meta_roas_by_campaign`: campaigns whose Meta-claimed purchase value and CRM revenue differ by
  more than META_ATTRIBUTION_GAP_WARN over the checked range (`attribution_gap`, a WARN).
"""

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from metaspend_pipeline import anomalies, validation
from metaspend_pipeline.assets import ROAS_KEYS, fx_rates_daily, meta_raw_insights, meta_spend_daily
from metaspend_pipeline.assets.common import ORGANIZATIONS_FAILED
from metaspend_pipeline.partitions import days, partition_dates
from metaspend_pipeline.resources import WarehouseResource
from metaspend_pipeline.settings import AnomalySettings, Settings, SettingsError
from metaspend_pipeline.storage import fx as fx_store
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import ROAS_GROUPS
from metaspend_pipeline.storage.schema import meta_spend_daily as spend_table

SHOWN = 20  # findings listed in a check's description; all are counted
DEFAULT_DAYS = 31  # the range a check covers when it runs without a partition


class CheckRange(dg.Config):
    """The days to check when the run has no partitions (e.g. `meta_spend_checks_job`)."""

    since: str = Field(default="", description="First day, YYYY-MM-DD; default 31 days before `until`.")
    until: str = Field(default="", description="Last day, YYYY-MM-DD; default yesterday.")


def _day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(description=f"check config {name} {value!r} is not a date as YYYY-MM-DD") from None


def _range(context: dg.AssetCheckExecutionContext, config: CheckRange) -> tuple[dt.date, dt.date]:
    """The run's partition range; else the configured days; else the last 31 days."""
    if context.op_execution_context.has_partitions:
        return partition_dates(context.op_execution_context)  # type: ignore[arg-type]
    until = _day(config.until, "until") if config.until else utcnow().date() - dt.timedelta(days=1)
    since = _day(config.since, "since") if config.since else until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise dg.Failure(description=f"check config since {since} is after until {until}")
    return since, until


def _result(
    check_name: str,
    asset_key: dg.AssetKey,
    findings: Sequence[validation.Finding],
    since: dt.date,
    until: dt.date,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    figures: Mapping[str, int | Decimal] | None = None,
) -> dg.AssetCheckResult:
    """The check's verdict: findings listed (the first SHOWN) and counted; `figures` and the
    findings' own figures as metadata, numbers as numbers so that the UI plots them."""
    shown = "\n".join(f"- {f}" for f in findings[:SHOWN])
    more = f"\n- ... and {len(findings) - SHOWN} more" if len(findings) > SHOWN else ""
    metadata: dict[str, dg.MetadataValue] = {
        "problems": dg.MetadataValue.int(len(findings)),
        "checked_range": dg.MetadataValue.text(f"{since}..{until}"),
    }
    for name, value in (figures or {}).items():
        metadata[name] = dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(float(value))
    if any(f.figures for f in findings):
        metadata["findings"] = dg.MetadataValue.json(
            [
                {
                    "organization_id": f.organization_id,
                    "ad_account_id": f.ad_account_id,
                    "date": f.date.isoformat() if f.date else None,
                    **{k: v if isinstance(v, int) else str(v) for k, v in f.figures.items()},
                }
                for f in findings[:SHOWN]
            ]
        )
    return dg.AssetCheckResult(
        check_name=check_name,
        asset_key=asset_key,
        passed=not findings,
        severity=severity,
        description=f"{len(findings)} problem(s) in {since}..{until}" + (f":\n{shown}{more}" if findings else ""),
        metadata=metadata,
    )


@dg.asset_check(
    asset=meta_raw_insights,
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


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "every_organization_written",
            asset=key,
            description="Fails the run, naming them, when organizations could not be written by this step; "
            "the others' rows are written all the same.",
        )
        for key in (meta_spend_daily.key, *ROAS_KEYS.values())
    ],
    can_subset=True,
    name="every_organization_written",
)
def every_organization_written(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    """Reads this run's materializations of the step: the organizations it recorded as failed."""
    run_id = context.op_execution_context.run_id
    failed: dict[dg.AssetKey, str] = {}
    for record in context.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = record.asset_materialization
        if materialization is not None and ORGANIZATIONS_FAILED in materialization.metadata:
            failed[materialization.asset_key] = str(materialization.metadata[ORGANIZATIONS_FAILED].value)
    problems = []
    for key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.to_user_string()):
        if key.asset_key in failed:
            problems.append(f"{key.asset_key.to_user_string()}: {failed[key.asset_key]}")
        else:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=True)
    if problems:
        raise dg.Failure(description="organizations not written: " + " | ".join(problems))


_SPEND_CHECKS = {
    "levels_reconcile": (validation.reconcile_levels, "ad = ad set = campaign = account total, per ad account and day"),
    "keys_match_level": (validation.missing_keys, "no NULL id for the row's level, no id of a lower level"),
    "one_currency_per_ad_account": (validation.currencies_per_ad_account, "one currency per ad account, Meta's"),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=meta_spend_daily, description=description)
        for name, (_, description) in _SPEND_CHECKS.items()
    ],
    can_subset=True,
    name="meta_spend_daily_checks",
)
def meta_spend_daily_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    since, until = _range(context, config)
    with warehouse.engine().connect() as conn:
        for name, (check, _) in _SPEND_CHECKS.items():
            key = dg.AssetCheckKey(meta_spend_daily.key, name)
            if key in context.selected_asset_check_keys:
                yield _result(name, meta_spend_daily.key, check(conn, since, until), since, until)


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
        dg.AssetCheckSpec(name, asset=meta_spend_daily, description=description)
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
    since, until = _range(context, config)
    try:
        settings = AnomalySettings.from_env()
    except SettingsError as exc:
        raise dg.Failure(description=str(exc)) from None
    with warehouse.engine().connect() as conn:
        for name, (check, _) in _ANOMALY_CHECKS.items():
            if dg.AssetCheckKey(meta_spend_daily.key, name) in context.selected_asset_check_keys:
                found = check(conn, since, until, settings)
                yield _result(
                    name,
                    meta_spend_daily.key,
                    found.findings,
                    since,
                    until,
                    severity=dg.AssetCheckSeverity.WARN,
                    figures=found.figures,
                )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "no_currency_mismatch",
            asset=ROAS_KEYS[group],
            description="no group whose sales are in another currency than its spend",
        )
        for group in ROAS_GROUPS
    ],
    can_subset=True,
    name="meta_roas_checks",
)
def meta_roas_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    since, until = _range(context, config)
    with warehouse.engine().connect() as conn:
        for group in ROAS_GROUPS:
            key = dg.AssetCheckKey(ROAS_KEYS[group], "no_currency_mismatch")
            if key in context.selected_asset_check_keys:
                findings = validation.roas_currency_mismatches(conn, group, since, until)
                yield _result("no_currency_mismatch", ROAS_KEYS[group], findings, since, until)


@dg.asset_check(
    asset=ROAS_KEYS["campaign"],
    name="attribution_gap",
    description="Warns of campaigns whose Meta-claimed purchase value (meta_purchase_value: omni_purchase under "
    "the ad account's own attribution setting) and CRM revenue differ over the checked range by more than "
    "META_ATTRIBUTION_GAP_WARN (default 0.5), the gap being |meta - crm| / max(meta, crm): 0 when they agree, "
    "0.5 when one is twice the other, 1 when one side is 0. Campaigns without a CRM lead in the range, with "
    "neither value nor revenue, or with sales in another currency than the spend are not compared.",
)
def attribution_gap(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    since, until = _range(context, config)
    threshold = Settings.from_env().attribution_gap_warn
    with warehouse.engine().connect() as conn:
        gaps = validation.attribution_gaps(conn, since, until)
    over = sorted((g for g in gaps if g.gap > threshold), key=lambda g: (-g.gap, g.organization_id, g.campaign_id))
    return _result(
        "attribution_gap",
        ROAS_KEYS["campaign"],
        [g.finding(threshold) for g in over],
        since,
        until,
        severity=dg.AssetCheckSeverity.WARN,
        figures={
            "campaigns_compared": len(gaps),
            "largest_gap": max((g.gap for g in gaps), default=Decimal(0)),
            "threshold": threshold,
        },
    )


@dg.asset_check(
    asset=meta_spend_daily,
    name="yesterday_loaded",
    description="Passes when yesterday's partition (UTC) of meta_spend_daily is materialized: the asset's "
    "freshness policy looks at the latest materialization of any day, which a backfill of old days renews.",
)
def yesterday_loaded(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    yesterday = utcnow().date() - dt.timedelta(days=1)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=meta_spend_daily.key, asset_partitions=[yesterday.isoformat()]), limit=1
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


def build_spend_freshness_policy(settings: Settings) -> dg.FreshnessPolicy:
    """meta_spend_daily materialized in the 24 hours before each METASPEND_FRESHNESS_DEADLINE_CRON tick."""
    return dg.FreshnessPolicy.cron(
        deadline_cron=settings.freshness_deadline_cron,
        lower_bound_delta=dt.timedelta(hours=24),
        timezone=settings.schedule_timezone,
    )


@dg.asset_check(
    asset=fx_rates_daily,
    name="every_needed_currency_has_a_rate",
    description="Fails when a currency the pipeline needs (an ad account's, a sale's, a reporting currency) "
    "has no ECB rate on a day of the range, naming the currency, the days and who needs it; those "
    "organizations' ROAS fails, the others' is written.",
)
def every_needed_currency_has_a_rate(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    since, until = _range(context, config)
    with warehouse.engine().connect() as conn:
        needed = fx_store.needed_currencies(conn, since, until)
        have = fx_store.rates(conn, since, until)
    problems = []
    for currency, who in needed.items():
        missing = [d for d in days(since, until) if (d, currency) not in have]
        if missing:
            span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{missing[-1]} ({len(missing)} days)"
            problems.append(f"{currency}: no rate for {span}; needed by {', '.join(who)}")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(problems)} currenc{'y' if len(problems) == 1 else 'ies'} without a rate in {since}..{until}"
        + "".join(f"\n- {p}" for p in problems),
        metadata={
            "problems": dg.MetadataValue.int(len(problems)),
            "needed_currencies": dg.MetadataValue.int(len(needed)),
            "checked_range": dg.MetadataValue.text(f"{since}..{until}"),
        },
    )


asset_checks = [
    every_organization_fetched,
    every_needed_currency_has_a_rate,
    every_organization_written,
    meta_spend_daily_checks,
    meta_spend_anomaly_checks,
    meta_roas_checks,
    attribution_gap,
    yesterday_loaded,
]
