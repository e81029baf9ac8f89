"""The product's own tables, written by its application and only read here."""

from __future__ import annotations

import dagster as dg

from metaspend_pipeline.assets.common import OWNERS

lead = dg.AssetSpec(
    "lead",
    group_name="product",
    kinds={"sql"},
    owners=OWNERS,
    tags={"domain": "product"},
    description="Leads, written by the product's application: each carries the campaign, ad set and ad "
    "it came from. Read by the ROAS assets; never written here.",
    metadata={"dagster/table_name": "lead"},
)

sale = dg.AssetSpec(
    "sale",
    group_name="product",
    kinds={"sql"},
    owners=OWNERS,
    tags={"domain": "product"},
    description="Sales, written by the product's application, each tied to a lead; its amount and "
    "currency are the revenue of ROAS. Read here; never written.",
    metadata={"dagster/table_name": "sale"},
)
