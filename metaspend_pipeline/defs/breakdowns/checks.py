"""The checks of the breakdown tables: each adds up to meta_spend_daily, and every organization written."""

from collections.abc import Iterator

import dagster as dg

from metaspend_pipeline import validation
from metaspend_pipeline.defs.breakdowns.assets import BREAKDOWN_KEYS
from metaspend_pipeline.defs.common.checks import (
    EVERY_ORGANIZATION_WRITTEN,
    CheckRange,
    check_range,
    check_result,
    every_organization_written_results,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.meta.lookback import INSIGHTS
from metaspend_pipeline.settings import Settings

ADDS_UP = "adds_up_to_meta_spend_daily"


@dg.multi_asset_check(
    specs=[
        *(
            dg.AssetCheckSpec(
                ADDS_UP,
                asset=key,
                description="Per organization, day, level and object, the breakdown's spend adds up to "
                "meta_spend_daily's to the cent, and its impressions and clicks exactly (days a breakdown "
                "fetch completed, at the levels of META_BREAKDOWN_LEVELS).",
            )
            for key in BREAKDOWN_KEYS.values()
        ),
        *(
            dg.AssetCheckSpec(
                EVERY_ORGANIZATION_WRITTEN,
                asset=key,
                description="Fails the run, naming them, when organizations could not be fetched or written "
                "by this step; the others' rows are written all the same.",
            )
            for key in BREAKDOWN_KEYS.values()
        ),
    ],
    can_subset=True,
    name="meta_breakdowns_checks",
)
def meta_breakdowns_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    since, until = check_range(context, config, INSIGHTS)
    settings = Settings.from_env()
    with warehouse.engine().connect() as conn:
        for name, key in BREAKDOWN_KEYS.items():
            if dg.AssetCheckKey(key, ADDS_UP) not in context.selected_asset_check_keys:
                continue
            if name not in settings.breakdowns:
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name=ADDS_UP,
                    passed=True,
                    description=f"{name} is not in META_BREAKDOWNS: not fetched, nothing to compare",
                )
                continue
            findings = validation.breakdowns_reconcile(conn, name, settings.breakdown_levels, since, until)
            yield check_result(ADDS_UP, key, findings, since, until)
    yield from every_organization_written_results(context, list(BREAKDOWN_KEYS.values()))
