"""The six assets (raw insights, daily spend, the ECB's exchange rates, ROAS by campaign, ad set and
ad) and the product's two source tables, as thin Dagster functions over the plain modules of the package."""

from metaspend_pipeline.assets.fx import fx_rates_daily
from metaspend_pipeline.assets.raw import meta_raw_insights
from metaspend_pipeline.assets.roas import ROAS_KEYS, meta_roas
from metaspend_pipeline.assets.sources import lead, product_tables, sale
from metaspend_pipeline.assets.spend import meta_spend_daily

__all__ = [
    "ROAS_KEYS",
    "fx_rates_daily",
    "lead",
    "meta_raw_insights",
    "meta_roas",
    "meta_spend_daily",
    "product_tables",
    "sale",
]
