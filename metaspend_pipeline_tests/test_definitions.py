from __future__ import annotations

import dagster as dg

from metaspend_pipeline.definitions import defs


def test_definitions_load() -> None:
    assert isinstance(defs, dg.Definitions)
    defs.resolve_all_job_defs()
    assert "warehouse" in (defs.resources or {})
