"""`fx_rates_daily`: the ECB's euro reference rates for every day, weekends and holidays filled."""

from collections import Counter
from typing import Any

import dagster as dg

from metaspend_pipeline import fx
from metaspend_pipeline.defs.common.config import OWNERS
from metaspend_pipeline.defs.common.metadata import add_daily_metadata, table_schema
from metaspend_pipeline.defs.common.partitions import (
    days,
    meta_spend_backfill_policy,
    meta_spend_partitions,
    partition_dates,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import shown_url
from metaspend_pipeline.settings import fx_rates_url
from metaspend_pipeline.storage import fx as fx_store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import fx_rates_daily as fx_table


@dg.asset(
    partitions_def=meta_spend_partitions,
    backfill_policy=meta_spend_backfill_policy,
    group_name="exchange_rates",
    kinds={"python", "sql"},
    owners=OWNERS,
    tags={"domain": "finance", "source": "ecb"},
    code_version="1",
    description=(
        "The European Central Bank's euro reference rates (units of currency per euro, EUR = 1), one row "
        "per day and currency the ECB publishes. Weekends and TARGET holidays take the previous business "
        "day's rate (ecb_date says which). Read from METASPEND_FX_RATES_URL (default: the ECB's 90-day file, "
        "its full history for older ranges). Fails, writing nothing, when the feed lacks days of a currency "
        "the reporting columns need (an ad account's, a sale's or a reporting currency, of organizations with "
        "amounts in another currency than their reporting one). A needed currency the ECB does not publish at "
        "all fails the check every_needed_currency_has_a_rate, naming it and who needs it; ROAS leaves the "
        "reporting amounts that need it NULL. The range is replaced in one transaction. ROAS does not depend on "
        "this asset for anything but those columns: without it (ECB outage, air-gapped install) the rest of "
        "ROAS is written."
    ),
    metadata={"dagster/table_name": "fx_rates_daily"},
)
def fx_rates_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    since, until = partition_dates(context)
    engine = warehouse.engine()
    try:
        url = fx.feed_url(fx_rates_url(), since, utcnow().date())
        source = shown_url(url)  # a query string (a mirror's api key) is never shown
        context.log.info(f"reading the ECB's reference rates from {source} for {since}..{until}")
        publications = fx.parse_feed(fx.read_feed(url), source)
        rows = fx.fill_days(publications, since, until)
        with engine.connect() as conn:
            needed = fx_store.needed_currencies(conn, since, until)
        fx.check_needed(rows, publications, needed, since, until, source)
        with engine.begin() as conn:
            written = fx_store.replace_rates(conn, since, until, rows)
    except MetaspendError as exc:
        raise dg.Failure(description=str(exc)) from None
    unpublished = fx.unpublished(publications, needed)
    if unpublished:
        # ROAS goes on, leaving NULL the reporting amounts that need it; the check
        # `every_needed_currency_has_a_rate` fails naming the currency.
        context.log.error(f"the ECB publishes no rate for {fx.describe_unpublished(unpublished)} (source {source})")
    currencies = sorted({r.currency for r in rows})
    per_day: dict[Any, dict[str, Any]] = {}
    counts = Counter(r.date for r in rows)
    ecb_date = {r.date: r.ecb_date for r in rows if r.currency == fx.EUR}
    for day, count in counts.items():
        per_day[day] = {
            "dagster/row_count": dg.MetadataValue.int(count),
            "ecb_date": dg.MetadataValue.text(str(ecb_date[day])),
            "filled_from_previous_business_day": dg.MetadataValue.bool(ecb_date[day] != day),
        }
    add_daily_metadata(context, context.asset_key, days(since, until), per_day)
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(written),
            "currencies": dg.MetadataValue.int(len(currencies)),
            "currency_codes": dg.MetadataValue.text(", ".join(currencies)),
            "needed_currencies": dg.MetadataValue.text(", ".join(needed)),
            "unpublished_currencies": dg.MetadataValue.text(fx.describe_unpublished(unpublished)),
            "source": dg.MetadataValue.url(source) if source.startswith("http") else dg.MetadataValue.path(source),
            "partition_range": dg.MetadataValue.text(f"{since}..{until}"),
            "dagster/column_schema": table_schema(fx_table, engine.dialect),
        }
    )
