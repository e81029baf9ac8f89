"""The one Definitions object of the project, assembled from the modules of the package."""

from __future__ import annotations

import dagster as dg

from metaspend_pipeline.resources import WarehouseResource

defs = dg.Definitions(
    resources={"warehouse": WarehouseResource()},
)
