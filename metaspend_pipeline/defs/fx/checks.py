"""The check of the exchange rates: every currency the reporting columns need has a rate on every day."""

import dagster as dg

from metaspend_pipeline.defs.common.checks import CheckRange, check_range
from metaspend_pipeline.defs.common.partitions import days
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.storage import fx as fx_store


@dg.asset_check(
    asset="fx_rates_daily",
    name="every_needed_currency_has_a_rate",
    description="Fails when a currency the reporting columns convert with (an ad account's, a sale's or a "
    "reporting currency of an organization with amounts in another currency; never EUR) has no ECB rate on a "
    "day of the range, naming the currency, the days and who needs it. ROAS is written all the same: only "
    "the reporting amounts of the rows that need the rate are NULL.",
)
def every_needed_currency_has_a_rate(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    since, until = check_range(context, config)
    with warehouse.engine().connect() as conn:
        needed = fx_store.needed_currencies(conn, since, until)
        have = fx_store.rates(conn, since, until)
    problems = []
    for currency, who in needed.items():
        missing = [d for d in days(since, until) if (d, currency) not in have]
        if missing:
            span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{missing[-1]} ({len(missing)} days)"
            problems.append(f"{currency}: no rate for {span}; needed by {', '.join(who)}")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(problems)} currenc{'y' if len(problems) == 1 else 'ies'} without a rate in {since}..{until}"
        + "".join(f"\n- {p}" for p in problems),
        metadata={
            "problems": dg.MetadataValue.int(len(problems)),
            "needed_currencies": dg.MetadataValue.int(len(needed)),
            "checked_range": dg.MetadataValue.text(f"{since}..{until}"),
        },
    )
