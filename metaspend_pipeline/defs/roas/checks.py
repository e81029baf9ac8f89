"""The checks of the ROAS tables: every organization written, no group whose sales are in another
currency than its spend, and (warnings) campaigns whose Meta-claimed purchase value and CRM revenue
differ by more than META_ATTRIBUTION_GAP_WARN, and campaign-days whose Meta purchases differ between
the campaign's row and the sum of its ads."""

from collections.abc import Iterator
from decimal import Decimal

import dagster as dg

from metaspend_pipeline import validation
from metaspend_pipeline.defs.common.checks import (
    EVERY_ORGANIZATION_WRITTEN,
    CheckRange,
    check_range,
    check_result,
    every_organization_written_results,
)
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.defs.roas.assets import ROAS_KEYS
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage.schema import ROAS_GROUPS


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            EVERY_ORGANIZATION_WRITTEN,
            asset=key,
            description="Fails the run, naming them, when organizations could not be written by this step; "
            "the others' rows are written all the same.",
        )
        for key in ROAS_KEYS.values()
    ],
    can_subset=True,
    name="meta_roas_written",
)
def meta_roas_written(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
    yield from every_organization_written_results(context, list(ROAS_KEYS.values()))


ACROSS_LEVELS = dg.AssetCheckKey(ROAS_KEYS["campaign"], "meta_purchases_reconcile_across_levels")


@dg.multi_asset_check(
    specs=[
        *(
            dg.AssetCheckSpec(
                "no_currency_mismatch",
                asset=ROAS_KEYS[group],
                description="no group whose sales are in another currency than its spend",
            )
            for group in ROAS_GROUPS
        ),
        dg.AssetCheckSpec(
            ACROSS_LEVELS.name,
            asset=ACROSS_LEVELS.asset_key,
            description="Warns where Meta's purchases on a campaign's own row (meta_roas_by_campaign.meta_purchases) "
            "differ from the sum over its ads (meta_roas_by_ad) on a day, naming the organization, ad account, "
            "campaign, day and both figures. One purchase action type is picked per row (omni_purchase, else "
            "purchase, else offsite_conversion.fb_pixel_purchase), so ads reporting other types than the campaign "
            "row add up to another number. Campaign-level figures are the ones to compare with Ads Manager's "
            "campaign view; see docs/roas.md.",
        ),
    ],
    can_subset=True,
    name="meta_roas_checks",
)
def meta_roas_checks(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """One step for the ROAS tables' checks that read nothing but the range (no step of its own each)."""
    since, until = check_range(context, config)
    with warehouse.engine().connect() as conn:
        for group in ROAS_GROUPS:
            key = dg.AssetCheckKey(ROAS_KEYS[group], "no_currency_mismatch")
            if key in context.selected_asset_check_keys:
                findings = validation.roas_currency_mismatches(conn, group, since, until)
                yield check_result("no_currency_mismatch", ROAS_KEYS[group], findings, since, until)
        if ACROSS_LEVELS in context.selected_asset_check_keys:
            findings = validation.purchases_across_levels(conn, since, until)
            yield check_result(
                ACROSS_LEVELS.name,
                ACROSS_LEVELS.asset_key,
                findings,
                since,
                until,
                severity=dg.AssetCheckSeverity.WARN,
                figures={"campaign_days_differing": len(findings)},
            )


@dg.asset_check(
    asset=ROAS_KEYS["campaign"],
    name="attribution_gap",
    description="Warns of campaigns whose Meta-claimed purchase value (meta_purchase_value: omni_purchase under "
    "the ad account's own attribution setting) and CRM revenue differ over the checked range by more than "
    "META_ATTRIBUTION_GAP_WARN (default 0.5), the gap being |meta - crm| / max(meta, crm): 0 when they agree, "
    "0.5 when one is twice the other, 1 when one side is 0. Campaigns without a CRM lead in the range, with "
    "neither value nor revenue, or with sales in another currency than the spend are not compared.",
)
def attribution_gap(
    context: dg.AssetCheckExecutionContext, config: CheckRange, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    since, until = check_range(context, config)
    threshold = Settings.from_env().attribution_gap_warn
    with warehouse.engine().connect() as conn:
        gaps = validation.attribution_gaps(conn, since, until)
    over = sorted((g for g in gaps if g.gap > threshold), key=lambda g: (-g.gap, g.organization_id, g.campaign_id))
    return check_result(
        "attribution_gap",
        ROAS_KEYS["campaign"],
        [g.finding(threshold) for g in over],
        since,
        until,
        severity=dg.AssetCheckSeverity.WARN,
        figures={
            "campaigns_compared": len(gaps),
            "largest_gap": max((g.gap for g in gaps), default=Decimal(0)),
            "threshold": threshold,
        },
    )
