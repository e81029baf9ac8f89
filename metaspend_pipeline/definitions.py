"""The project's definitions, built from the settings when Dagster loads them: no other module reads a
setting when imported."""

from __future__ import annotations

import os

import dagster as dg

from metaspend_pipeline.assets import fx_rates_daily, meta_raw_insights, meta_roas, meta_spend_daily, product_tables
from metaspend_pipeline.assets.common import dialect_of, table_schema
from metaspend_pipeline.checks import asset_checks, build_spend_freshness_policy
from metaspend_pipeline.jobs import (
    meta_spend_checks_job,
    meta_spend_job,
    meta_token_refresh_job,
    product_tables_observe_job,
)
from metaspend_pipeline.partitions import build_spend_partitions
from metaspend_pipeline.resources import MetaAdsResource, WarehouseResource
from metaspend_pipeline.schedules import build_spend_schedule, build_token_refresh_schedule
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.schema import ROAS_TABLES
from metaspend_pipeline.storage.schema import fx_rates_daily as fx_table
from metaspend_pipeline.storage.schema import lead as lead_table
from metaspend_pipeline.storage.schema import meta_raw_insights as raw_table
from metaspend_pipeline.storage.schema import meta_spend_daily as spend_table
from metaspend_pipeline.storage.schema import sale as sale_table

TABLES = {
    "lead": lead_table,
    "sale": sale_table,
    "meta_raw_insights": raw_table,
    "meta_spend_daily": spend_table,
    "fx_rates_daily": fx_table,
    **{f"meta_roas_by_{group}": table for group, table in ROAS_TABLES.items()},
}


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar (shown by name, never by value) for a secret that is set; None for one that is not."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition, with the settings' partitions, schedules and freshness deadline, and the
    column schema as the settings' database (METASPEND_DATABASE_URL, else SQLite) types it."""
    partitions = build_spend_partitions(settings)
    dialect = dialect_of(settings.database_url)
    freshness = build_spend_freshness_policy(settings)

    def with_settings(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        return spec.replace_attributes(
            partitions_def=partitions if spec.partitions_def is not None else None,
            metadata={**spec.metadata, "dagster/column_schema": table_schema(TABLES[name], dialect)},
            freshness_policy=freshness if name == "meta_spend_daily" else spec.freshness_policy,
        )

    warehouse = WarehouseResource()
    return dg.Definitions(
        assets=[
            a.map_asset_specs(with_settings)
            for a in (product_tables, meta_raw_insights, meta_spend_daily, fx_rates_daily, meta_roas)
        ],
        asset_checks=asset_checks,
        jobs=[meta_spend_job, meta_spend_checks_job, meta_token_refresh_job, product_tables_observe_job],
        schedules=[build_spend_schedule(settings), build_token_refresh_schedule(settings)],
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


def load() -> dg.Definitions:
    """The definitions as the environment says now (tests and commands that change it call this)."""
    return build_definitions(Settings.from_env())


# What Dagster, dg and other tools load (`metaspend_pipeline.definitions:defs`): built when this
# module is imported, which only happens to load the definitions. The rest of the package reads
# no setting at import.
defs = load()
