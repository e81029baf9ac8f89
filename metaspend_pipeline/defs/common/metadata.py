"""The metadata the Dagster UI shows and plots: column schemas, numbers per day and per run."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa


def table_schema(table: sa.Table, dialect: sa.Dialect) -> dg.TableSchema:
    """The table's columns as the database in use types them, with their COMMENTs as descriptions."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                str(c.type.compile(dialect=dialect)),
                description=c.comment,
                constraints=dg.TableColumnConstraints(nullable=bool(c.nullable)),
            )
            for c in table.columns
        ]
    )


def dialect_of(database_url: str) -> sa.Dialect:
    """The SQL dialect of a database URL, without connecting (SQLite for the embedded default)."""
    return sa.make_url(database_url).get_dialect()()


def money_metadata(prefix: str, amounts: Mapping[str, Decimal]) -> dict[str, Any]:
    """One number per currency (a float, for the UI's plots; the warehouse keeps exact decimals)."""
    return {
        f"{prefix}_{currency}": dg.MetadataValue.float(float(amount)) for currency, amount in sorted(amounts.items())
    }


def add_daily_metadata(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    days: list[dt.date],
    per_day: Mapping[dt.date, Mapping[str, Any]],
) -> None:
    """Each day's own numbers on that day's materialization. Dagster records one materialization per
    partition of a range result; metadata scoped to a partition lands on that partition's event alone,
    so the UI plots each day's rows and spend (a day without rows shows 0)."""
    for day in days:
        numbers = per_day.get(day) or {"dagster/row_count": dg.MetadataValue.int(0)}
        context.add_asset_metadata(dict(numbers), asset_key=asset_key, partition_key=day.isoformat())


def record_run_level(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, run_level: Mapping[str, Any]) -> None:
    """Numbers of the whole run (requests, accounts, waits) on one observation without a partition,
    and in the run's log: they are not any one day's, so they are kept off the per-day events."""
    shown = {
        name: str(getattr(value, "value", value)).replace("\n- ", "; ").lstrip("- ")
        for name, value in run_level.items()
    }
    context.log.info(f"{asset_key.to_user_string()}: " + ", ".join(f"{name}={text}" for name, text in shown.items()))
    context.log_event(dg.AssetObservation(asset_key=asset_key, metadata=dict(run_level)))


def daily_metadata(
    rows_by_day_level: Mapping[tuple[dt.date, str], int],
    spend_by_day_currency: Mapping[tuple[dt.date, str], Decimal],
) -> dict[dt.date, dict[str, Any]]:
    """Each day's rows per level, its row count and its spend per currency, as plottable numbers."""
    rows: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (day, level), count in rows_by_day_level.items():
        rows[day][level] += count
    spend: dict[dt.date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (day, currency), amount in spend_by_day_currency.items():
        spend[day][currency] += amount
    out: dict[dt.date, dict[str, Any]] = {}
    for day in set(rows) | set(spend):
        out[day] = {
            **{f"rows_{level.lower()}": dg.MetadataValue.int(n) for level, n in sorted(rows[day].items())},
            "dagster/row_count": dg.MetadataValue.int(sum(rows[day].values())),
            **money_metadata("spend", spend[day]),
        }
    return out


def range_summary(
    rows_by_day_level: Mapping[tuple[dt.date, str], int],
    spend_by_day_currency: Mapping[tuple[dt.date, str], Decimal],
) -> dg.MetadataValue:
    """The run's totals, as text: numbers per partition are on each day's own materialization."""
    rows: dict[str, int] = defaultdict(int)
    for (_, level), count in rows_by_day_level.items():
        rows[level] += count
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for (_, currency), amount in spend_by_day_currency.items():
        spend[currency] += amount
    lines = [f"- rows {level.lower()}: {n}" for level, n in sorted(rows.items())]
    lines += [f"- spend {currency}: {amount}" for currency, amount in sorted(spend.items())]
    return dg.MetadataValue.md("\n".join(lines) or "no rows")


def fetch_metadata(report: Any) -> dict[str, Any]:
    """A fetch's numbers of the whole run (an `ingest.IngestReport`): accounts, Meta requests, waits,
    and the requests of each ad account, which the UI shows on the run-level observation."""
    stats = report.stats
    waited = stats.throttle_wait_seconds + stats.pacing_wait_seconds + stats.app_pacing_wait_seconds
    metadata = {
        "accounts_fetched": dg.MetadataValue.int(report.accounts_fetched),
        "accounts_failed": dg.MetadataValue.int(len({(o.organization_id, o.ad_account_id) for o in report.failures})),
        "meta_requests": dg.MetadataValue.int(stats.requests),
        "meta_pages": dg.MetadataValue.int(stats.pages),
        "meta_retries": dg.MetadataValue.int(stats.retries),
        "throttle_wait_seconds": dg.MetadataValue.float(round(waited, 3)),
        "report_runs": dg.MetadataValue.int(stats.async_jobs),
        "fetch_concurrency": dg.MetadataValue.int(report.concurrency),
        "fetch_wall_seconds": dg.MetadataValue.float(round(report.fetch_wall_seconds, 3)),
        "requests_per_ad_account": dg.MetadataValue.json(
            {o.ad_account_id: o.requests for o in report.outcomes if o.ad_account_id}
        ),
    }
    if report.failures:
        metadata["organizations_failed"] = dg.MetadataValue.text(", ".join(report.failed_organizations))
    return metadata
