"""Observing the product's tables."""

import dagster as dg

product_tables_observe_job = dg.define_asset_job(
    "product_tables_observe_job",
    selection=dg.AssetSelection.assets("lead", "sale"),
    description="Observe the product's lead and sale tables: row count, latest row, data version.",
)
