"""The code location: every definition under `defs/`, found by Dagster's autoload, with the settings of
the environment applied when Dagster loads them. No module reads a setting when it is imported.

Three things depend on the environment, and each is applied here to every asset that asks for it:
- the partitions (daily, weekly, monthly from META_SPEND_START_DATE): an asset declared with the
  default ones gets the settings' ones;
- the freshness deadline (METASPEND_FRESHNESS_DEADLINE_CRON): likewise for the default policy;
- the column schema: an asset that names its table (`dagster/table_name`) gets the table's columns
  and COMMENTs, typed as the warehouse's database (METASPEND_DATABASE_URL, else SQLite) types them.
A new asset under `defs/` (`dg scaffold defs dagster.asset x.py`) needs no edit here.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from metaspend_pipeline.defs.common.metadata import dialect_of, table_schema
from metaspend_pipeline.defs.common.partitions import settings_for_assets
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.schema import metadata as warehouse_tables

TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"


def build_definitions(settings: Settings) -> dg.Definitions:
    """Every definition under `defs/`, with `settings` applied."""
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    defaults = settings_for_assets(settings)
    dialect = dialect_of(settings.database_url)

    def with_settings(spec: dg.AssetSpec) -> dg.AssetSpec:
        changes = {
            attribute: configured for attribute, default, configured in defaults if getattr(spec, attribute) == default
        }
        table_name = spec.metadata.get(TABLE_NAME)
        table = warehouse_tables.tables.get(str(getattr(table_name, "value", table_name)))
        if table is not None:
            changes["metadata"] = {**spec.metadata, COLUMN_SCHEMA: table_schema(table, dialect)}
        return spec.replace_attributes(**changes) if changes else spec

    return dg.Definitions(
        assets=dg.map_asset_specs(with_settings, loaded.assets or []),
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources=loaded.resources,
        loggers=loaded.loggers,
        executor=loaded.executor,
        metadata=loaded.metadata,
    )


def load() -> dg.Definitions:
    """The definitions as the environment says now (tests and commands that change it call this)."""
    return build_definitions(Settings.from_env())


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster, dg and the other tools load (`metaspend_pipeline.definitions:defs`)."""
    return load()
