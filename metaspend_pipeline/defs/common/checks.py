"""What the asset checks share: the days they check, how a verdict reads, and the organizations a step
could not write.

Checks run after their asset in the same run, over the run's partition range; in a run without
partitions (`meta_spend_checks_job`) over the days of their config, else the last 31 days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal

import dagster as dg
from pydantic import Field

from metaspend_pipeline import validation
from metaspend_pipeline.defs.common.config import ORGANIZATIONS_FAILED
from metaspend_pipeline.defs.common.partitions import partition_dates, refuse_old_range
from metaspend_pipeline.meta.lookback import Lookback
from metaspend_pipeline.storage.db import utcnow

SHOWN = 20  # findings listed in a check's description; all are counted
DEFAULT_DAYS = 31  # the range a check covers when it runs without a partition
EVERY_ORGANIZATION_WRITTEN = "every_organization_written"


class CheckRange(dg.Config):
    """The days to check when the run has no partitions (e.g. `meta_spend_checks_job`)."""

    since: str = Field(default="", description="First day, YYYY-MM-DD; default 31 days before `until`.")
    until: str = Field(default="", description="Last day, YYYY-MM-DD; default yesterday.")


def _day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise dg.Failure(description=f"check config {name} {value!r} is not a date as YYYY-MM-DD") from None


def check_range(
    context: dg.AssetCheckExecutionContext,
    config: CheckRange,
    lookback: Lookback | None = None,
    period: str = "day",
) -> tuple[dt.date, dt.date]:
    """The days of the run's partition range (of days, weeks or months); else the configured days; else
    the last 31 days. The checks of Meta's data (`lookback`) refuse a range that starts before the first
    day Meta serves."""
    if context.op_execution_context.has_partitions:
        return partition_dates(context, lookback, period)
    until = _day(config.until, "until") if config.until else utcnow().date() - dt.timedelta(days=1)
    since = _day(config.since, "since") if config.since else until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise dg.Failure(description=f"check config since {since} is after until {until}")
    if lookback is not None:
        refuse_old_range(since, until, lookback)
    return since, until


def check_result(
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


def organizations_not_written(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> str | None:
    """What this run's materialization of `asset_key` names as not written (None: every organization was).

    Read through the instance's public `fetch_materializations`: the materializations of the run's
    last partition, newest first, until this run's own (a range run records one per partition, each
    with the step's metadata). A step that recorded no materialization in this run failed outright;
    its own failure already fails the run.
    """
    if not context.op_execution_context.has_partitions:
        return None  # the checks alone (meta_spend_checks_job): no step of this run wrote anything
    run_id = context.op_execution_context.run_id
    last = context.op_execution_context.partition_key_range.end
    records_filter = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[last])
    cursor = None
    while True:
        result = context.instance.fetch_materializations(records_filter, limit=100, cursor=cursor)
        for record in result.records:
            if record.run_id != run_id:
                continue
            materialization = record.asset_materialization
            failed = materialization.metadata.get(ORGANIZATIONS_FAILED) if materialization else None
            return None if failed is None else str(failed.value)
        if not result.has_more:
            return None
        cursor = result.cursor


def every_organization_written_results(
    context: dg.AssetCheckExecutionContext, asset_keys: Sequence[dg.AssetKey]
) -> Iterator[dg.AssetCheckResult]:
    """Passing verdicts of `every_organization_written` on the selected assets, or a Failure (which
    fails the run) naming the organizations a step could not write; the others' rows are written."""
    problems = []
    for key in asset_keys:
        if dg.AssetCheckKey(key, EVERY_ORGANIZATION_WRITTEN) not in context.selected_asset_check_keys:
            continue
        failed = organizations_not_written(context, key)
        if failed:
            problems.append(f"{key.to_user_string()}: {failed}")
        else:
            yield dg.AssetCheckResult(asset_key=key, check_name=EVERY_ORGANIZATION_WRITTEN, passed=True)
    if problems:
        raise dg.Failure(description="organizations not written: " + " | ".join(problems))
