"""What the assets share: run configuration, scope, and the metadata the Dagster UI plots."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.shards import SHARD_TAG, Shard
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.accounts import normalize_ad_account_id, validate_organization_id

GROUP = "meta_spend"
OWNERS = ["team:data-engineering"]
TAGS = {"domain": "marketing", "source": "meta"}
# metadata of a step's materialization naming the organizations it could not write
ORGANIZATIONS_FAILED = "organizations_failed"


class MetaSpendConfig(dg.Config):
    """Limits a run to some organizations or ad accounts; empty means every connected one.

    Set it on `meta_raw_insights`: the assets downstream of it in the same run process exactly
    what it fetched.
    """

    organizations: list[str] = Field(default_factory=list, description="Only these organizations.")
    ad_accounts: list[str] = Field(default_factory=list, description="Only these ad accounts (act_<digits>).")
    shard: str = Field(
        default="",
        description=f"Only the organizations of this shard, as i/N (e.g. 0/4); the run tag {SHARD_TAG} does the same.",
    )

    def organization_ids(self) -> list[str] | None:
        return [validate_organization_id(o) for o in self.organizations] or None

    def ad_account_ids(self) -> list[str] | None:
        return [normalize_ad_account_id(a) for a in self.ad_accounts] or None


def run_shard(context: dg.AssetExecutionContext, config: MetaSpendConfig) -> Shard | None:
    """The shard this run owns, from its tag `metaspend/shard` or its config `shard`; None: every organization."""
    tagged = context.run.tags.get(SHARD_TAG)
    try:
        shards = {Shard.parse(text) for text in (tagged, config.shard) if text}
    except InvalidInputError as exc:
        raise dg.Failure(description=str(exc)) from None
    if len(shards) > 1:
        raise dg.Failure(description=f"the run tag {SHARD_TAG}={tagged} and the run config shard={config.shard} differ")
    return next(iter(shards), None)


def fetched_in_run(conn: sa.Connection, run_id: str) -> dict[str, list[str]] | None:
    """Organizations -> ad accounts that `meta_raw_insights` fetched in this run; None if it did not run."""
    outcomes = raw_store.fetches_of_run(conn, run_id)
    if not outcomes:
        return None
    scope: dict[str, list[str]] = {}
    for outcome in outcomes:
        accounts = scope.setdefault(outcome.organization_id, [])
        if outcome.status == "OK" and outcome.ad_account_id and outcome.ad_account_id not in accounts:
            accounts.append(outcome.ad_account_id)
    return scope


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
    context.log.info(
        f"{asset_key.to_user_string()}: "
        + ", ".join(f"{name}={getattr(value, 'value', value)}" for name, value in run_level.items())
    )
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
