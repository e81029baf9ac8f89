"""The one Definitions object of the project, assembled from the modules of the package."""

from __future__ import annotations

import os

import dagster as dg

from metaspend_pipeline.resources import MetaAdsResource, WarehouseResource


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar (shown by name, never by value) for a secret that is set; None for one that is not."""
    return dg.EnvVar(name) if os.environ.get(name) else None


warehouse = WarehouseResource()

defs = dg.Definitions(
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
