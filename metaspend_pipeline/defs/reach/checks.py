"""The checks of the reach tables: reach never exceeds impressions, and each period's impressions and
spend add up to meta_spend_daily's over its days (reach itself is never a sum, and is not compared)."""

from collections.abc import Iterator

import dagster as dg

from metaspend_pipeline import validation
from metaspend_pipeline.defs.common.checks import (
    EVERY_ORGANIZATION_WRITTEN,
    CheckRange,
    check_range,
    check_result,
    organizations_not_written,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.defs.reach.assets import REACH_KEYS, periods

NOT_ABOVE = "reach_not_above_impressions"
ADDS_UP = "adds_up_to_meta_spend_daily"


def _checks(period: str) -> dg.AssetChecksDefinition:
    key = REACH_KEYS[period]

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(NOT_ABOVE, asset=key, description="No row's reach is larger than its impressions."),
            dg.AssetCheckSpec(
                ADDS_UP,
                asset=key,
                description=f"Each {period}'s impressions and spend equal meta_spend_daily's over its days, for the "
                "rows whose days are all loaded (the account level against its campaigns).",
            ),
            dg.AssetCheckSpec(
                EVERY_ORGANIZATION_WRITTEN,
                asset=key,
                description="Fails the run, naming them, when organizations could not be fetched or written.",
            ),
        ],
        can_subset=True,
        name=f"{key.to_user_string()}_checks",
    )
    def reach_checks(
        context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
    ) -> Iterator[dg.AssetCheckResult]:
        since, until = check_range(context, config, period=period)
        wanted = periods(period, since, until)  # without partitions: the periods the days touch
        first, last = wanted[0][0], wanted[-1][0]  # the first days of the first and last periods
        shown = (first, wanted[-1][1])  # the days they span, in the verdicts
        selected = context.selected_asset_check_keys
        with warehouse.engine().connect() as conn:
            if dg.AssetCheckKey(key, NOT_ABOVE) in selected:
                findings = validation.reach_above_impressions(conn, period, first, last)
                yield check_result(NOT_ABOVE, key, findings, *shown)
            if dg.AssetCheckKey(key, ADDS_UP) in selected:
                findings, skipped = validation.reach_adds_up(conn, period, first, last)
                yield check_result(ADDS_UP, key, findings, *shown, figures={"rows_not_comparable": skipped})
        if dg.AssetCheckKey(key, EVERY_ORGANIZATION_WRITTEN) in selected:
            failed = organizations_not_written(context, key)
            if failed:
                raise dg.Failure(description=f"organizations not written: {key.to_user_string()}: {failed}")
            yield dg.AssetCheckResult(asset_key=key, check_name=EVERY_ORGANIZATION_WRITTEN, passed=True)

    return reach_checks


meta_reach_weekly_checks = _checks("week")
meta_reach_monthly_checks = _checks("month")
