"""Reach by week and by month: a job each (their partitions are weeks and months, not days)."""

import dagster as dg

meta_reach_weekly_job = dg.define_asset_job(
    "meta_reach_weekly_job",
    selection=dg.AssetSelection.assets("meta_reach_weekly"),
    description="Unique reach and frequency per week (Monday to Sunday), with their checks.",
)

meta_reach_monthly_job = dg.define_asset_job(
    "meta_reach_monthly_job",
    selection=dg.AssetSelection.assets("meta_reach_monthly"),
    description="Unique reach and frequency per calendar month, with their checks.",
)
