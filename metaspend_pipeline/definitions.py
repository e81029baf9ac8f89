"""The one Definitions object of the project, assembled from the modules of the package."""

from __future__ import annotations

import os

import dagster as dg

from metaspend_pipeline.assets import lead, meta_raw_insights, meta_roas, meta_spend_daily, sale
from metaspend_pipeline.checks import asset_checks, freshness_sensor
from metaspend_pipeline.jobs import meta_spend_checks_job, meta_spend_job, meta_token_refresh_job
from metaspend_pipeline.resources import MetaAdsResource, WarehouseResource
from metaspend_pipeline.schedules import meta_spend_schedule, meta_token_refresh_schedule


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar (shown by name, never by value) for a secret that is set; None for one that is not."""
    return dg.EnvVar(name) if os.environ.get(name) else None


warehouse = WarehouseResource()

defs = dg.Definitions(
    assets=[lead, sale, meta_raw_insights, meta_spend_daily, meta_roas],
    asset_checks=asset_checks,
    jobs=[meta_spend_job, meta_spend_checks_job, meta_token_refresh_job],
    schedules=[meta_spend_schedule, meta_token_refresh_schedule],
    sensors=[freshness_sensor],
    resources={
        "warehouse": warehouse,
        "meta": MetaAdsResource(
            warehouse=warehouse,
            token_encryption_key=dg.EnvVar("META_TOKEN_ENCRYPTION_KEY"),
            token_encryption_old_keys=_secret("META_TOKEN_ENCRYPTION_OLD_KEYS"),
            app_secret=_secret("META_APP_SECRET"),
        ),
    },
)
