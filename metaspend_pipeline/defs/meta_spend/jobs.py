"""The spend pipeline over a partition or a partition range, and its checks alone."""

import dagster as dg

SPEND_ASSETS = [
    dg.AssetKey("meta_raw_insights"),
    dg.AssetKey("meta_spend_daily"),
    dg.AssetKey("fx_rates_daily"),
    dg.AssetKey("meta_roas_by_campaign"),
    dg.AssetKey("meta_roas_by_adset"),
    dg.AssetKey("meta_roas_by_ad"),
]
YESTERDAY_LOADED = dg.AssetCheckKey(dg.AssetKey("meta_spend_daily"), "yesterday_loaded")
# yielded by meta_raw_insights itself: selecting it would run the fetch
API_VERSION_CURRENT = dg.AssetCheckKey(dg.AssetKey("meta_raw_insights"), "meta_api_version_current")

BREAKDOWN_ASSETS = [
    dg.AssetKey("meta_spend_by_age_gender"),
    dg.AssetKey("meta_spend_by_country"),
    dg.AssetKey("meta_spend_by_placement"),
]
PRODUCT_TABLES = [dg.AssetKey("lead"), dg.AssetKey("sale")]

meta_spend_job = dg.define_asset_job(
    "meta_spend_job",
    selection=dg.AssetSelection.assets(*SPEND_ASSETS, *BREAKDOWN_ASSETS, *PRODUCT_TABLES),
    description="Raw insights, daily spend, the ECB's exchange rates, ROAS and the breakdowns (META_BREAKDOWNS) for a "
    "partition or a partition range, with their checks; and an observation of the product's lead and sale tables "
    "the ROAS reads (row count, latest row).",
)

meta_spend_checks_job = dg.define_asset_job(
    "meta_spend_checks_job",
    selection=dg.AssetSelection.checks_for_assets(*SPEND_ASSETS, *BREAKDOWN_ASSETS)
    - dg.AssetSelection.checks(YESTERDAY_LOADED, API_VERSION_CURRENT),
    description="The spend and ROAS checks alone, over a partition range: nothing is fetched or rewritten.",
)
