"""Meta's conversions: fetched with spend, stored per action type and attribution window, compared
with the sandbox's truth; Meta's purchases in the ROAS tables; the attribution-gap check."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa

from metaspend_pipeline.storage.schema import meta_conversions_daily, meta_roas_by_campaign, meta_spend_daily
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day, iso
from metaspend_pipeline_tests.defs.test_assets import LEVELS, failure_text

START, END = iso(1), iso(3)
CENT = Decimal("0.01")


def conversion_rows(pipeline: Pipeline) -> list[tuple]:
    t = meta_conversions_daily
    query = sa.select(
        t.c.organization_id,
        t.c.ad_account_id,
        t.c.level,
        t.c.date,
        t.c.campaign_id,
        t.c.adset_id,
        t.c.ad_id,
        t.c.action_type,
        t.c.attribution_window,
        t.c.currency,
        t.c.count,
        t.c.value,
    )
    with pipeline.engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(query)), key=_order)


def conversion_truth(pipeline: Pipeline, windows: tuple[str, ...], start: str = START, end: str = END) -> list[tuple]:
    since, until = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    world = pipeline.sandbox.world
    rows = []
    for org in world.organizations:
        for account in org.ad_accounts:
            for level, meta_level in LEVELS.items():
                for r in world.conversion_truth(account, meta_level, since, until, windows):
                    rows.append(
                        (
                            org.organization_id,
                            account,
                            level,
                            dt.date.fromisoformat(str(r["date"])),
                            r["campaign_id"],
                            r["adset_id"],
                            r["ad_id"],
                            r["action_type"],
                            r["attribution_window"],
                            r["currency"],
                            r["count"],
                            None if r["value"] is None else Decimal(str(r["value"])).quantize(CENT),
                        )
                    )
    return sorted(rows, key=_order)


def _order(row: tuple) -> tuple:
    return tuple("" if v is None else str(v) for v in row[:9])


@pytest.mark.parametrize(
    "windows",
    [("7d_click", "1d_view"), ("1d_click", "28d_click", "1d_ev")],
    ids=["default-windows", "other-windows"],
)
def test_conversions_equal_the_sandbox_truth_per_window_and_action_type_at_every_level(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, windows: tuple[str, ...]
) -> None:
    if windows != ("7d_click", "1d_view"):
        monkeypatch.setenv("META_ATTRIBUTION_WINDOWS", ",".join(windows))
    result = pipeline.run(START, END)
    assert result.success, failure_text(result)
    stored = conversion_rows(pipeline)
    assert stored == conversion_truth(pipeline, windows)
    # the truth is not trivial: every level, window, both events, and accounts with other settings
    assert {r[2] for r in stored} == {"CAMPAIGN", "ADSET", "AD"}
    assert {r[8] for r in stored} == {"default", *windows}
    assert {"omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase", "lead"} <= {r[7] for r in stored}
    assert any(r[7] == "lead" and r[11] is None for r in stored)
    # act_1000000002 attributes on 1-day click: its `default` is not the 7d_click + 1d_view of the others
    counts = {(r[1], *r[3:7], r[8]): r[10] for r in stored if r[7] == "omni_purchase"}
    differ = {
        key[0]
        for key, count in counts.items()
        if key[-1] == "default"
        and count != counts.get((*key[:-1], "7d_click"), 0) + counts.get((*key[:-1], "1d_view"), 0)
    }
    if windows == ("7d_click", "1d_view"):
        assert "act_1000000002" in differ and "act_1000000001" not in differ
    # a rerun replaces the scope exactly
    assert pipeline.run(START, END).success
    assert conversion_rows(pipeline) == stored


def test_the_fields_ride_on_the_spend_requests(pipeline: Pipeline) -> None:
    """No request more than spend alone: the conversion fields are in the same insights calls."""
    assert pipeline.run(START, END).success
    calls = [r for r in pipeline.sandbox.requests_log() if r["path"].endswith("/insights") and r["method"] == "GET"]
    assert len(calls) == 5 * 4
    for call in calls:
        fields = call["params"]["fields"].split(",")
        assert {"spend", "actions", "action_values", "purchase_roas"} <= set(fields)
        assert json.loads(call["params"]["action_attribution_windows"]) == ["7d_click", "1d_view"]
        assert "use_unified_attribution_setting" not in call["params"]  # ignored by Meta since 2025-06-10


def test_roas_carries_meta_purchases_equal_to_the_truth(pipeline: Pipeline) -> None:
    assert pipeline.run(START, END).success
    world = pipeline.sandbox.world
    expected = {}
    for org in world.organizations:
        for account in org.ad_accounts:
            spend = {
                (r["date"], r["campaign_id"]): Decimal(str(r["spend"]))
                for r in world.truth(account, "campaign", day(1), day(3))
            }
            for r in world.conversion_truth(account, "campaign", day(1), day(3)):
                if r["action_type"] == "omni_purchase" and r["attribution_window"] == "default":
                    value = Decimal(str(r["value"])).quantize(CENT)
                    amount = spend[(r["date"], r["campaign_id"])]
                    roas = (value / amount).quantize(Decimal("0.000001"), ROUND_HALF_UP) if value and amount else None
                    expected[(dt.date.fromisoformat(str(r["date"])), r["campaign_id"])] = (r["count"], value, roas)
    t = meta_roas_by_campaign
    with pipeline.engine.connect() as conn:
        stored = {
            (r.date, r.campaign_id): (r.meta_purchases, r.meta_purchase_value, r.meta_roas)
            for r in conn.execute(sa.select(t))
            if r.meta_purchases is not None or r.meta_purchase_value is not None
        }
        without = conn.execute(sa.select(sa.func.count()).where(t.c.meta_purchases.is_(None))).scalar_one()
    assert expected and stored == expected
    assert without > 0  # campaigns and days without purchases keep NULL, not 0


def test_a_bad_conversion_value_leaves_the_stored_rows_untouched(pipeline: Pipeline) -> None:
    """A fractional count refused at fetch time: the run fails naming it, and no table changes."""
    assert pipeline.run(iso(2)).success
    tables = (meta_conversions_daily, meta_spend_daily, meta_roas_by_campaign)

    def stored() -> list[list[str]]:
        with pipeline.engine.connect() as conn:
            return [sorted(map(repr, conn.execute(sa.select(t)).all())) for t in tables]

    before = stored()
    assert before[0]
    pipeline.sandbox.add_faults(
        [
            {
                "kind": "corrupt_row",
                "match": "act_1000000001/insights",
                "field": "actions",
                "value": [{"action_type": "omni_purchase", "value": "2.5"}],
            }
        ]
    )
    config = {"ops": {"meta_raw_insights": {"config": {"ad_accounts": ["act_1000000001"]}}}}
    result = pipeline.run(iso(2), run_config=config)
    assert not result.success
    assert (
        f"ad account act_1000000001, account row of {iso(2)}: field actions[omni_purchase].value '2.5' "
        "is not a whole number"
    ) in failure_text(result)
    assert stored() == before


# --- Meta's purchases in the ROAS tables and the attribution-gap check, on a hand-made example -------

D4, D5 = dt.date(2026, 10, 4), dt.date(2026, 10, 5)
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
D = Decimal


def _conversion(
    when: dt.date, level: str, campaign: str, adset: str | None, ad: str | None, action_type: str, window: str,
    count: int | None, value: str | None,
) -> dict[str, object]:  # fmt: skip
    return {
        "organization_id": "acme",
        "date": when,
        "level": level,
        "ad_account_id": "act_1",
        "campaign_id": campaign,
        "adset_id": adset,
        "ad_id": ad,
        "action_type": action_type,
        "attribution_window": window,
        "currency": "USD",
        "count": count,
        "value": None if value is None else D(value),
        "updated_at": NOW,
    }


def _example(env: dict[str, str], crm_revenue: str) -> str:
    """acme's act_1 (USD, UTC), spend and Meta's conversions as written by the spend step:

    campaign 101 on the 4th: spend 100.00; omni_purchase, purchase and the pixel's purchase all
      2 for 50.00 (one event under three types), omni_purchase 3 for 80.00 under 7d_click; its ads
      201 (omni_purchase 1 for 20.00) and 202 (the pixel's purchase only, 1 for 30.00); one CRM
      lead, sold for `crm_revenue`
    campaign 102 on the 4th: spend 30.00; purchase and the pixel's 3 for 45.00, no omni_purchase
    campaign 103 on the 4th: spend 20.00; the pixel's purchase only, 1 for 10.00
    campaign 104: spend 40.00 on the 4th with omni_purchase 1 and no value; 10.00 on the 5th, leads only
    campaign 105 on the 4th: spend 0.00; omni_purchase 1 for 25.00
    """
    from metaspend_pipeline.storage import db
    from metaspend_pipeline.storage.schema import connected_account, lead, meta_ad_account, sale
    from metaspend_pipeline_tests.test_roas import spend

    url = env["METASPEND_DATABASE_URL"]
    types = ("omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase")
    conversions = [
        *(_conversion(D4, "CAMPAIGN", "101", None, None, t, "default", 2, "50.00") for t in types),
        _conversion(D4, "CAMPAIGN", "101", None, None, "omni_purchase", "7d_click", 3, "80.00"),
        *(_conversion(D4, "ADSET", "101", "301", None, t, "default", 2, "50.00") for t in types),
        _conversion(D4, "AD", "101", "301", "201", "omni_purchase", "default", 1, "20.00"),
        _conversion(D4, "AD", "101", "301", "201", "purchase", "default", 1, "20.00"),
        _conversion(D4, "AD", "101", "301", "202", "offsite_conversion.fb_pixel_purchase", "default", 1, "30.00"),
        *(_conversion(D4, "CAMPAIGN", "102", None, None, t, "default", 3, "45.00") for t in types[1:]),
        _conversion(D4, "CAMPAIGN", "103", None, None, types[2], "default", 1, "10.00"),
        _conversion(D4, "CAMPAIGN", "104", None, None, "omni_purchase", "default", 1, None),
        _conversion(D5, "CAMPAIGN", "104", None, None, "lead", "default", 4, None),
        _conversion(D4, "CAMPAIGN", "105", None, None, "omni_purchase", "default", 1, "25.00"),
    ]
    with db.engine_for(url).begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca1",
                organization_id="acme",
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=["act_1"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            meta_ad_account.insert().values(
                ad_account_id="act_1",
                name="US",
                currency="USD",
                timezone_name="UTC",
                timezone_offset_hours_utc=D(0),
                updated_at=NOW,
            )
        )
        conn.execute(
            meta_spend_daily.insert(),
            [
                spend(D4, "CAMPAIGN", "act_1", "101", None, None, "100.00"),
                spend(D4, "ADSET", "act_1", "101", "301", None, "100.00"),
                spend(D4, "AD", "act_1", "101", "301", "201", "60.00"),
                spend(D4, "AD", "act_1", "101", "301", "202", "40.00"),
                spend(D4, "CAMPAIGN", "act_1", "102", None, None, "30.00"),
                spend(D4, "CAMPAIGN", "act_1", "103", None, None, "20.00"),
                spend(D4, "CAMPAIGN", "act_1", "104", None, None, "40.00"),
                spend(D5, "CAMPAIGN", "act_1", "104", None, None, "10.00"),
                spend(D4, "CAMPAIGN", "act_1", "105", None, None, "0.00"),
            ],
        )
        conn.execute(meta_conversions_daily.insert(), conversions)
        created = dt.datetime.combine(D4, dt.time(12), dt.UTC)
        conn.execute(
            lead.insert().values(
                id="L1", organization_id="acme", created_at=created, campaign_id="101", adset_id="301", ad_id="201"
            )
        )
        conn.execute(
            sale.insert().values(
                id="S1", organization_id="acme", lead_id="L1", amount=D(crm_revenue), currency="USD", closed_at=NOW
            )
        )
    return url


def _run_roas(url: str):  # type: ignore[no-untyped-def]
    import dagster as dg

    result = Pipeline(url, None, "http://127.0.0.1:9").run(  # type: ignore[arg-type]
        "2026-10-04",
        "2026-10-05",
        asset_selection=[dg.AssetKey(f"meta_roas_by_{g}") for g in ("campaign", "adset", "ad")],
    )
    assert result.success, failure_text(result)
    return result


def _meta_columns(url: str, group: str) -> dict[tuple[dt.date, str], tuple]:
    from metaspend_pipeline.storage import db
    from metaspend_pipeline.storage.schema import ROAS_TABLES

    t = ROAS_TABLES[group]
    with db.engine_for(url).connect() as conn:
        return {
            (r.date, r._mapping[f"{group}_id"]): (r.meta_purchases, r.meta_purchase_value, r.meta_roas)
            for r in conn.execute(sa.select(t))
        }


def test_meta_purchases_take_one_action_type_per_row_in_the_canonical_order(env: dict[str, str]) -> None:
    url = _example(env, "100.00")
    _run_roas(url)
    assert _meta_columns(url, "campaign") == {
        # the same 2 purchases under three types: counted once, as omni_purchase; 7d_click not used
        (D4, "101"): (2, D("50.00"), D("0.500000")),
        # no omni_purchase: purchase, not purchase + the pixel's
        (D4, "102"): (3, D("45.00"), D("1.500000")),
        # the pixel's purchase alone
        (D4, "103"): (1, D("10.00"), D("0.500000")),
        # a count without a value: value and meta_roas NULL
        (D4, "104"): (1, None, None),
        # leads only: Meta reported no purchase, so NULL rather than 0
        (D5, "104"): (None, None, None),
        # no spend: no meta_roas
        (D4, "105"): (1, D("25.00"), None),
    }
    assert _meta_columns(url, "adset") == {(D4, "301"): (2, D("50.00"), D("0.500000"))}
    # the type is chosen per ad: omni_purchase for 201, the pixel's purchase for 202
    assert _meta_columns(url, "ad") == {
        (D4, "201"): (1, D("20.00"), D("0.333333")),
        (D4, "202"): (1, D("30.00"), D("0.750000")),
    }


def test_purchases_across_levels_name_the_campaign_and_both_figures(env: dict[str, str]) -> None:
    """Campaign 101's row counts 2 omni_purchase; its ads 1 omni_purchase + 1 of the pixel's: the same 2,
    under other types, so no warning. Add an ad that reports `purchase` only (5): 2 against 7. Campaigns
    whose ads report no purchase type at all (102-105 here) differ too."""
    from metaspend_pipeline import validation
    from metaspend_pipeline.storage import db

    url = _example(env, "100.00")
    engine = db.engine_for(url)
    with engine.connect() as conn:
        before = validation.purchases_across_levels(conn, D4, D5)
    assert [(f.date, f.detail.split(":")[0]) for f in before] == [(D4, f"campaign {c}") for c in (102, 103, 104, 105)]
    with engine.begin() as conn:
        conn.execute(
            meta_conversions_daily.insert().values(
                **_conversion(D4, "AD", "101", "301", "203", "purchase", "default", 5, "9.00")
            )
        )
    with engine.connect() as conn:
        [finding] = [f for f in validation.purchases_across_levels(conn, D4, D5) if "campaign 101" in f.detail]
    assert str(finding) == (
        f"organization acme, ad account act_1, {D4}: campaign 101: Meta reports 2 purchase(s) on the campaign's row "
        "and 7 summed over its ads; one purchase action type is picked per row (omni_purchase, purchase, "
        "offsite_conversion.fb_pixel_purchase, the first present): the campaign's row counts omni_purchase (1 row), "
        "its ads offsite_conversion.fb_pixel_purchase (1 ad), omni_purchase (1 ad), purchase (1 ad)"
    )
    assert finding.figures == {"campaign_purchases": 2, "ads_purchases": 7}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # one small run: the SQL is tested above on both
def test_the_check_warns_when_an_ad_reports_another_purchase_type(pipeline: Pipeline) -> None:
    """The sandbox's first ad row of act_2000000001 reports `purchase` alone (999): its campaign's own row
    and the sum over its ads disagree, and meta_purchases_reconcile_across_levels says so, as a warning."""
    pipeline.sandbox.add_faults(
        [
            {
                "kind": "corrupt_row",
                "match": "act_2000000001/insights",
                "skip": 3,  # account, campaign and ad set levels go by; the ad level's first page is hit
                "field": "actions",
                "value": [{"action_type": "purchase", "value": "999"}],
            }
        ]
    )
    config = {"ops": {"meta_raw_insights": {"config": {"organizations": ["demo-org-2"]}}}}
    result = pipeline.run(iso(2), run_config=config)
    assert result.success
    [check] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "meta_purchases_reconcile_across_levels"
    ]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["problems"].value == 1
    [row] = check.metadata["findings"].value
    assert (row["organization_id"], row["ad_account_id"], row["date"]) == ("demo-org-2", "act_2000000001", iso(2))
    assert row["ads_purchases"] >= 999 > row["campaign_purchases"]  # the ad's 999 is in the ads' sum alone
    assert "purchase (1 ad)" in check.description and "summed over its ads" in check.description


@pytest.mark.parametrize(
    ("crm_revenue", "warned"),
    [("100.00", False), ("100.01", True), ("75.00", False), ("25.00", False), ("24.99", True)],
    ids=["crm-twice-meta", "crm-just-past", "crm-above-meta", "meta-twice-crm", "meta-just-past"],
)
def test_the_attribution_gap_warns_exactly_past_the_threshold(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, crm_revenue: str, warned: bool
) -> None:
    """Campaign 101: Meta claims 50.00, the CRM `crm_revenue`; gap = |meta - crm| / max(meta, crm).
    Campaigns without a CRM lead (102 to 105) are not compared."""
    import dagster as dg

    monkeypatch.setenv("META_ATTRIBUTION_GAP_WARN", "0.5")
    result = _run_roas(_example(env, crm_revenue))
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "attribution_gap"]
    assert evaluation.passed is not warned
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["campaigns_compared"].value == 1
    assert evaluation.metadata["threshold"].value == 0.5
    meta, crm = D("50.00"), D(crm_revenue)
    gap = abs(meta - crm) / max(meta, crm)
    assert evaluation.metadata["largest_gap"].value == pytest.approx(float(gap))
    if warned:
        assert (
            f"organization acme: campaign 101: Meta claims 50.00 USD of purchases, the CRM {crm_revenue} USD of "
            f"revenue; gap {gap:.1%} > 50%"
        ) in evaluation.description
    else:
        assert evaluation.description.startswith("0 problem(s) in 2026-10-04..2026-10-05")


def test_the_report_shows_meta_beside_the_crm(env: dict[str, str]) -> None:
    from click.testing import CliRunner

    from metaspend_pipeline.cli import cli

    _run_roas(_example(env, "100.00"))
    args = ["roas", "--org", "acme", "--group-by", "campaign", "--from", "2026-10-04", "--to", "2026-10-05"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    items = {i["campaignId"]: i for i in json.loads(result.stdout, parse_float=Decimal)}
    crm = ("salesCount", "revenue", "roas", "metaPurchases", "metaPurchaseValue", "metaRoas")
    assert {k: items["101"][k] for k in crm} == dict(
        zip(crm, (1, D("100.00"), D("1.0"), 2, D("50.00"), D("0.5")), strict=True)
    )
    # campaign 104 over two days: one purchase without value on the 4th, leads only on the 5th
    assert {k: items["104"][k] for k in crm[3:]} == {"metaPurchases": 1, "metaPurchaseValue": None, "metaRoas": None}
    assert '"metaPurchaseValue": 50.00' in result.stdout
    table = CliRunner().invoke(cli, [*args, "--format", "table"]).stdout
    assert "metaPurchases  metaPurchaseValue  metaRoas" in table


def test_the_sandbox_serves_its_conversion_truth_to_other_processes(sandbox, sandbox_server) -> None:  # type: ignore[no-untyped-def]
    """Benchmarks and the CLI read the truth over HTTP: the same rows as the world's."""
    from metaspend_pipeline.sandbox.control import SandboxAdmin

    served = SandboxAdmin(sandbox_server.url).conversion_truth("act_3000000002", "adset", iso(1), iso(2), "1d_ev")
    assert served == sandbox.world.conversion_truth("act_3000000002", "adset", day(1), day(2), ("1d_ev",))
    assert {r["attribution_window"] for r in served} == {"default", "1d_ev"}


def test_the_client_parses_each_window_of_each_action_type(sandbox, api_settings) -> None:  # type: ignore[no-untyped-def]
    """The parser on its own, for the ad account whose own setting is 1-day click: `default` is it."""
    import dataclasses

    from metaspend_pipeline.meta.client import MetaClient

    account = "act_1000000002"
    token = next(o.token for o in sandbox.world.organizations if account in o.ad_accounts)
    settings = dataclasses.replace(api_settings, attribution_windows=("1d_click", "7d_click", "1d_view"))
    rows = list(MetaClient(token, settings).insights(account, "ad", day(1), day(2), use_async=False))
    parsed = sorted(
        (r.date.isoformat(), r.ad_id, c.action_type, c.attribution_window, c.count, c.value)
        for r in rows
        for c in r.conversions
    )
    truth = sorted(
        (
            t["date"],
            t["ad_id"],
            t["action_type"],
            t["attribution_window"],
            t["count"],
            t["value"] and Decimal(t["value"]),
        )
        for t in sandbox.world.conversion_truth(account, "ad", day(1), day(2), ("1d_click", "7d_click", "1d_view"))
    )
    assert parsed == truth
    defaults = {(p[0], p[1], p[2]): p[4] for p in parsed if p[3] == "default"}
    one_day = {(p[0], p[1], p[2]): p[4] for p in parsed if p[3] == "1d_click"}
    assert all(count == one_day.get(key, 0) for key, count in defaults.items())
