"""The product's own tables, written by its application and only read here."""

from __future__ import annotations

import dagster as dg

from metaspend_pipeline.assets.common import table_schema
from metaspend_pipeline.storage.schema import lead as lead_table
from metaspend_pipeline.storage.schema import sale as sale_table

lead = dg.AssetSpec(
    "lead",
    group_name="product",
    kinds={"sql"},
    description="Leads, written by the product's application: each carries the campaign, ad set and ad "
    "it came from. Read by the ROAS assets; never written here.",
    metadata={"dagster/column_schema": table_schema(lead_table), "dagster/table_name": "lead"},
)

sale = dg.AssetSpec(
    "sale",
    group_name="product",
    kinds={"sql"},
    description="Sales, written by the product's application, each tied to a lead; its amount and "
    "currency are the revenue of ROAS. Read here; never written.",
    metadata={"dagster/column_schema": table_schema(sale_table), "dagster/table_name": "sale"},
)
