"""The product's own tables, written by its application and only read here: observed (row count,
latest row), never materialized."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import sqlalchemy as sa

from metaspend_pipeline.defs.common.config import OWNERS
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.storage.schema import lead as lead_table
from metaspend_pipeline.storage.schema import sale as sale_table


def table_specs() -> list[dg.AssetSpec]:
    """`lead` and `sale` as specs. Built by a function, not held at module level, where autoload would
    find them a second time beside `product_tables`; tests and benchmarks use them as external tables."""
    return [
        dg.AssetSpec(
            "lead",
            group_name="product",
            kinds={"sql"},
            owners=OWNERS,
            tags={"domain": "product"},
            description="Leads, written by the product's application: each carries the campaign, ad set and ad "
            "it came from. Read by the ROAS assets; never written here.",
            metadata={"dagster/table_name": "lead"},
        ),
        dg.AssetSpec(
            "sale",
            group_name="product",
            kinds={"sql"},
            owners=OWNERS,
            tags={"domain": "product"},
            description="Sales, written by the product's application, each tied to a lead; its amount and "
            "currency are the revenue of ROAS. Read here; never written.",
            metadata={"dagster/table_name": "sale"},
        ),
    ]


@dg.multi_observable_source_asset(specs=table_specs(), can_subset=True, name="product_tables")
def product_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[dg.ObserveResult]:
    """Row count and latest lead created / sale closed, so the UI shows how fresh the product's tables are."""
    with warehouse.engine().connect() as conn:
        for key, table, latest_column in (
            (dg.AssetKey("lead"), lead_table, "created_at"),
            (dg.AssetKey("sale"), sale_table, "closed_at"),
        ):
            if key not in context.selected_asset_keys:
                continue
            rows, latest = conn.execute(
                sa.select(sa.func.count(), sa.func.max(table.c[latest_column])).select_from(table)
            ).one()
            latest_at = _utc(latest)
            metadata: dict[str, dg.MetadataValue] = {"dagster/row_count": dg.MetadataValue.int(rows)}
            if latest_at is not None:
                metadata[f"latest_{latest_column}"] = dg.MetadataValue.timestamp(latest_at)
            yield dg.ObserveResult(
                asset_key=key,
                metadata=metadata,
                data_version=dg.DataVersion(f"{rows}:{latest_at.isoformat() if latest_at else '-'}"),
            )


def _utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """A timestamp read back as an aware UTC datetime (SQLite's MAX returns text)."""
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
