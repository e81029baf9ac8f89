"""The ECB's rates (`fx_rates_daily`) against the sandbox's truth, the failure on a currency the ECB
does not publish, one ROAS per organization in its reporting currency (hand-computed), and the
commands that set and report in it."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from metaspend_pipeline import fx
from metaspend_pipeline.cli import cli
from metaspend_pipeline.currency import AMOUNT_SCALE, minor_units
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.defs.fx.assets import fx_rates_daily
from metaspend_pipeline.defs.fx.checks import every_needed_currency_has_a_rate
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.sandbox.ecb import target_holidays
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import (
    BUNDLED_FX_RATES,
    ECB_RATES_URL,
    SANDBOX_ECB_PATH,
    Settings,
    SettingsError,
    fx_rates_url,
)
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import (
    ROAS_TABLES,
    connected_account,
    lead,
    meta_ad_account,
    meta_spend_daily,
    sale,
)
from metaspend_pipeline.storage.schema import fx_rates_daily as fx_table
from metaspend_pipeline_tests.bad_inputs import FEED, FEED_DAY, FX_API_KEY, FxFeed, currency_case, rate_case
from metaspend_pipeline_tests.conftest import Listener, Pipeline
from metaspend_pipeline_tests.dates import TODAY

D = Decimal
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def run_cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def materialize_rates(url: str, since: dt.date, until: dt.date) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [fx_rates_daily],
        resources={"warehouse": WarehouseResource(database_url=url)},
        tags={
            "dagster/asset_partition_range_start": since.isoformat(),
            "dagster/asset_partition_range_end": until.isoformat(),
        },
        raise_on_error=False,
    )


def stored_rates(url: str) -> list[dict[str, object]]:
    t = fx_table
    with db.engine_for(url).connect() as conn:
        rows = conn.execute(sa.select(t.c.date, t.c.currency, t.c.rate, t.c.ecb_date).order_by(t.c.date, t.c.currency))
        return [dict(r._mapping) for r in rows]


def around_a_holiday() -> tuple[dt.date, dt.date]:
    """Eight days around the latest TARGET holiday at least ten days ago: a weekend and a holiday.

    The days start at the holiday itself when three days before it would be before the first
    partition (on a clock in early 2024, the holiday is 1 January 2024)."""
    holiday = max(
        h for year in (TODAY.year - 1, TODAY.year) for h in target_holidays(year) if h <= TODAY - dt.timedelta(days=10)
    )
    first_partition = Settings.from_env({}).spend_start_date
    start = holiday - dt.timedelta(days=3) if holiday - dt.timedelta(days=3) >= first_partition else holiday
    return start, start + dt.timedelta(days=7)


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


# --- the rates --------------------------------------------------------------------------------


def test_rates_equal_the_sandbox_truth_with_weekends_and_holidays_filled(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str
) -> None:
    since, until = around_a_holiday()
    result = materialize_rates(env["METASPEND_DATABASE_URL"], since, until)
    assert result.success
    truth = sandbox.ecb.truth(since, until)
    assert stored_rates(env["METASPEND_DATABASE_URL"]) == truth
    filled = {r["date"] for r in truth if r["ecb_date"] != r["date"]}
    assert any(d.weekday() < 5 for d in filled), "the range has a holiday on a weekday"
    assert any(d.weekday() >= 5 for d in filled), "the range has a weekend"
    [first, *_] = result.get_asset_materialization_events()
    metadata = first.materialization.metadata
    assert metadata["rows"].value == len(truth)
    assert metadata["currencies"].value == len({r["currency"] for r in truth})
    # a rerun replaces the range: the same rows, no duplicates
    assert materialize_rates(env["METASPEND_DATABASE_URL"], since, until).success
    assert stored_rates(env["METASPEND_DATABASE_URL"]) == truth


def test_a_currency_the_ecb_does_not_publish_fails_the_check_naming_it(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str
) -> None:
    """The published rates are written all the same (the other organizations' ROAS needs them);
    the check fails naming the currency, its days and who needs it."""
    url = env["METASPEND_DATABASE_URL"]
    since, until = around_a_holiday()
    with db.engine_for(url).begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca-ars",
                organization_id="pampa",
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=["act_81"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        created = dt.datetime.combine(since + dt.timedelta(days=1), dt.time(12), dt.UTC)
        conn.execute(lead.insert().values(id="LA", organization_id="pampa", created_at=created, campaign_id="9"))
        conn.execute(
            sale.insert().values(
                id="SA", organization_id="pampa", lead_id="LA", amount=D("1000.00"), currency="ars", closed_at=created
            )
        )
    result = dg.materialize(
        [fx_rates_daily, every_needed_currency_has_a_rate],
        resources={"warehouse": WarehouseResource(database_url=url)},
        tags={
            "dagster/asset_partition_range_start": since.isoformat(),
            "dagster/asset_partition_range_end": until.isoformat(),
        },
    )
    assert stored_rates(url) == sandbox.ecb.truth(since, until)
    [materialization, *_] = result.get_asset_materialization_events()
    assert materialization.materialization.metadata["unpublished_currencies"].value == (
        "ARS, needed by organization pampa (sales)"
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    days = (until - since).days + 1
    assert evaluation.description == (
        f"1 currency without a rate in {since}..{until}\n"
        f"- ARS: no rate for {since}..{until} ({days} days); needed by organization pampa (sales)"
    )


def test_the_rates_check_passes_when_every_needed_currency_has_a_rate(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str
) -> None:
    url = env["METASPEND_DATABASE_URL"]
    since, until = around_a_holiday()
    with db.engine_for(url).begin() as conn:
        conn.execute(
            meta_ad_account.insert().values(
                ad_account_id="act_82", currency="JPY", timezone_name="Asia/Tokyo", updated_at=NOW
            )
        )
        conn.execute(
            connected_account.insert().values(
                id="ca-jpy",
                organization_id="sakura",
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=["act_82"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
    resources = {"warehouse": WarehouseResource(database_url=url)}
    tags = {
        "dagster/asset_partition_range_start": since.isoformat(),
        "dagster/asset_partition_range_end": until.isoformat(),
    }
    # before the rates are loaded, the check names the ad account's currency and the reporting one
    before = dg.materialize(
        [fx_rates_daily, every_needed_currency_has_a_rate],
        resources=resources,
        selection=dg.AssetSelection.checks(every_needed_currency_has_a_rate),
        run_config={
            "ops": {
                "fx_rates_daily_every_needed_currency_has_a_rate": {
                    "config": {"since": since.isoformat(), "until": until.isoformat()}
                }
            }
        },
    )
    [evaluation] = before.get_asset_check_evaluations()
    assert not evaluation.passed
    assert "- JPY: no rate for" in evaluation.description
    assert "needed by organization sakura (ad account act_82)" in evaluation.description
    assert "- USD: no rate for" in evaluation.description
    after = dg.materialize([fx_rates_daily, every_needed_currency_has_a_rate], resources=resources, tags=tags)
    [evaluation] = after.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["needed_currencies"].value == 2


def test_a_range_older_than_the_90_day_file_reads_the_full_history() -> None:
    today = dt.date(2026, 12, 1)
    assert fx.feed_url(ECB_RATES_URL, dt.date(2026, 11, 20), today) == ECB_RATES_URL
    assert fx.feed_url(ECB_RATES_URL, dt.date(2026, 6, 1), today) == (
        "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.xml"
    )
    assert fx.feed_url("file:///tmp/rates.xml", dt.date(2020, 1, 1), today) == "file:///tmp/rates.xml"


def test_a_file_feed_is_parsed_exactly_and_filled_over_easter(tmp_path: Path) -> None:
    path = tmp_path / "rates.xml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
        'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref"><gesmes:subject>Reference rates</gesmes:subject>'
        '<Cube><Cube time="2026-04-07"><Cube currency="USD" rate="1.1012"/><Cube currency="JPY" rate="163.27"/></Cube>'
        '<Cube time="2026-04-02"><Cube currency="USD" rate="1.0999"/><Cube currency="JPY" rate="162.9"/></Cube>'
        "</Cube></gesmes:Envelope>"
    )
    publications = fx.parse_feed(fx.read_feed(path.as_uri()), str(path))
    rows = fx.fill_days(publications, dt.date(2026, 4, 2), dt.date(2026, 4, 7))
    usd = {r.date: (r.rate, r.ecb_date) for r in rows if r.currency == "USD"}
    # Good Friday to Easter Monday take Maundy Thursday's rate
    assert usd == {
        **{dt.date(2026, 4, d): (D("1.0999"), dt.date(2026, 4, 2)) for d in range(2, 7)},
        dt.date(2026, 4, 7): (D("1.1012"), dt.date(2026, 4, 7)),
    }
    assert {r.rate for r in rows if r.currency == "EUR"} == {D(1)}
    assert all(isinstance(r.rate, Decimal) for r in rows)
    with pytest.raises(fx.FxRatesError, match="no rate of JPY for 2026-04-20"):
        fx.check_needed(
            fx.fill_days(publications, dt.date(2026, 4, 20), dt.date(2026, 4, 20)),
            publications,
            {"JPY": ["organization x (ad account act_1)"]},
            dt.date(2026, 4, 20),
            dt.date(2026, 4, 20),
            str(path),
        )


def test_the_bundled_file_is_the_sandbox_rates() -> None:
    publications = fx.parse_feed(fx.read_feed(fx_rates_url({"METASPEND_FX_RATES_URL": "bundled"})), "bundled")
    sandbox = Sandbox(0)
    day = max(d for d in publications if d <= TODAY)
    assert publications[day] == {c: r for c, r in sandbox.ecb.published(day).items() if c in publications[day]}
    assert {"USD", "BRL", "INR", "JPY"} <= set(publications[day])
    assert BUNDLED_FX_RATES.exists()


def test_every_reporting_currency_fits_the_reporting_columns() -> None:
    """Reporting amounts are rounded to the currency's minor units and stored in NUMERIC(18, 2): a
    reporting currency must be one the ECB publishes (or EUR), and none of those has three decimals,
    so the three-decimal currencies (BHD, KWD, ...) are refused as reporting currencies, naming them."""
    for code in (*fx.ECB_CURRENCIES, fx.EUR):
        assert minor_units(fx.validate_reporting_currency(code)) <= AMOUNT_SCALE, code
    assert minor_units("JPY") == minor_units("ISK") == 0
    for code in ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"):
        assert minor_units(code) == 3
        with pytest.raises(InvalidInputError, match=f"reporting currency {code} has no ECB reference rate"):
            fx.validate_reporting_currency(code)


def test_the_rates_url_comes_from_the_environment() -> None:
    assert fx_rates_url({}) == ECB_RATES_URL
    sandbox = {"METASPEND_ENV": "development", "META_GRAPH_API_URL": "http://127.0.0.1:8765"}
    assert fx_rates_url(sandbox) == "http://127.0.0.1:8765/__sandbox/ecb/eurofxref-hist-90d.xml"
    assert fx_rates_url({"META_GRAPH_API_URL": "http://127.0.0.1:8765"}) == ECB_RATES_URL  # not development
    assert fx_rates_url({"METASPEND_FX_RATES_URL": "https://mirror.example.com/eurofxref-hist.xml"}).startswith(
        "https:"
    )
    with pytest.raises(SettingsError, match="plain http"):
        fx_rates_url({"METASPEND_FX_RATES_URL": "http://mirror.example.com/rates.xml"})
    with pytest.raises(SettingsError, match="user name or password"):
        fx_rates_url({"METASPEND_FX_RATES_URL": "https://user:pw@mirror.example.com/rates.xml"})


# --- ROAS in the reporting currency -----------------------------------------------------------

E1, E2 = dt.date(2026, 10, 6), dt.date(2026, 10, 7)
RATES = {E1: {"EUR": "1", "USD": "1.0850", "BRL": "6.0611"}, E2: {"EUR": "1", "USD": "1.0900", "BRL": "6.1000"}}


def _spend(day: dt.date, account: str, campaign: str, amount: str, currency: str) -> dict[str, object]:
    return {
        "organization_id": "globex",
        "provider": "FACEBOOK",
        "date": day,
        "level": "CAMPAIGN",
        "ad_account_id": account,
        "campaign_id": campaign,
        "adset_id": None,
        "ad_id": None,
        "currency": currency,
        "spend": D(amount),
        "impressions": 1,
        "clicks": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }


@pytest.fixture
def globex(env: dict[str, str]) -> str:
    """globex spends in USD (act_71) and BRL (act_72); both on UTC.

    campaign 601 (USD): E1 spend 10.05, sales 33.33 USD and 12.00 BRL (mixed); E2 spend 20.00, sale 50.00 USD
    campaign 602 (BRL): E1 spend 100.00, sale 250.00 BRL
    campaign 603 (USD): E1 spend 1.00, sales 1.00 USD and 5.00 BRL (where rounding before summing matters)
    """
    url = env["METASPEND_DATABASE_URL"]
    with db.engine_for(url).begin() as conn:
        conn.execute(
            connected_account.insert().values(
                id="ca-globex",
                organization_id="globex",
                provider="FACEBOOK",
                status="CONNECTED",
                ad_accounts=["act_71", "act_72"],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            meta_ad_account.insert(),
            [
                {"ad_account_id": a, "name": a, "currency": c, "timezone_name": "UTC", "updated_at": NOW}
                for a, c in (("act_71", "USD"), ("act_72", "BRL"))
            ],
        )
        conn.execute(
            meta_spend_daily.insert(),
            [
                _spend(E1, "act_71", "601", "10.05", "USD"),
                _spend(E2, "act_71", "601", "20.00", "USD"),
                _spend(E1, "act_72", "602", "100.00", "BRL"),
                _spend(E1, "act_71", "603", "1.00", "USD"),
            ],
        )
        leads = [("G1", E1, "601"), ("G2", E1, "601"), ("G3", E2, "601"), ("G4", E1, "602")]
        leads += [("G5", E1, "603"), ("G6", E1, "603")]
        conn.execute(
            lead.insert(),
            [
                {
                    "id": i,
                    "organization_id": "globex",
                    "created_at": dt.datetime.combine(d, dt.time(12), dt.UTC),
                    "campaign_id": c,
                }
                for i, d, c in leads
            ],
        )
        sales = [("G1", "33.33", "USD"), ("G2", "12.00", "BRL"), ("G3", "50.00", "USD"), ("G4", "250.00", "BRL")]
        sales += [("G5", "1.00", "USD"), ("G6", "5.00", "BRL")]
        conn.execute(
            sale.insert(),
            [
                {
                    "id": f"S{i}",
                    "organization_id": "globex",
                    "lead_id": i,
                    "amount": D(a),
                    "currency": c,
                    "closed_at": NOW,
                }
                for i, a, c in sales
            ],
        )
        conn.execute(
            fx_table.insert(),
            [
                {"date": d, "currency": c, "rate": D(r), "ecb_date": d, "fetched_at": NOW}
                for d, rates in RATES.items()
                for c, r in rates.items()
            ],
        )
    return url


def compute_roas(url: str) -> None:
    result = Pipeline(url, None, "http://127.0.0.1:9").run(  # type: ignore[arg-type]
        E1.isoformat(), E2.isoformat(), asset_selection=[dg.AssetKey(f"meta_roas_by_{g}") for g in ROAS_TABLES]
    )
    assert result.success


def reporting_rows(url: str) -> dict[tuple[dt.date, str], tuple]:
    t = ROAS_TABLES["campaign"]
    with db.engine_for(url).connect() as conn:
        return {
            (r.date, r.campaign_id): (r.reporting_currency, r.spend_reporting, r.revenue_reporting, r.roas_reporting)
            for r in conn.execute(sa.select(t).where(t.c.organization_id == "globex"))
        }


def test_a_mixed_currency_organization_gets_one_roas_in_its_reporting_currency(globex: str) -> None:
    assert run_cli("accounts", "set-reporting-currency", "--org", "globex", "eur").exit_code == 0
    compute_roas(globex)
    assert reporting_rows(globex) == {
        # 10.05 / 1.0850 = 9.2627 -> 9.26; 33.33 / 1.0850 = 30.7189 -> 30.72 plus 12.00 / 6.0611 = 1.9798 -> 1.98
        (E1, "601"): ("EUR", D("9.26"), D("32.70"), D("3.531317")),
        (E2, "601"): ("EUR", D("18.35"), D("45.87"), D("2.499728")),
        (E1, "602"): ("EUR", D("16.50"), D("41.25"), D("2.500000")),
        # each sale currency rounded before summing: 0.92 + 0.82 = 1.74 (1.7466 unrounded would give 1.75)
        (E1, "603"): ("EUR", D("0.92"), D("1.74"), D("1.891304")),
    }
    t = ROAS_TABLES["campaign"]
    with db.engine_for(globex).connect() as conn:
        mixed = conn.execute(
            sa.select(t.c.revenue, t.c.revenue_currency_mismatch).where(t.c.date == E1, t.c.campaign_id == "601")
        ).one()
    assert tuple(mixed) == (None, True)  # the account-currency columns stay as they were

    result = run_cli(
        "roas", "--org", "globex", "--from", E1.isoformat(), "--to", E2.isoformat(), "--currency", "reporting"
    )
    assert result.exit_code == 0, result.output
    items = {i["campaignId"]: i for i in json.loads(result.output, parse_float=Decimal)}
    # the range sums the converted days, then divides: 78.57 / 27.61
    assert {k: items["601"][k] for k in ("spend", "revenue", "roas", "currency", "revenueCurrencyMismatch")} == {
        "spend": D("27.61"),
        "revenue": D("78.57"),
        "roas": D("2.845708"),
        "currency": "EUR",
        "revenueCurrencyMismatch": False,
    }


def test_a_changed_reporting_currency_applies_from_the_next_run(globex: str) -> None:
    compute_roas(globex)  # in USD, the default
    assert reporting_rows(globex)[(E1, "601")] == ("USD", D("10.05"), D("35.48"), D("3.530348"))
    changed = run_cli("accounts", "set-reporting-currency", "--org", "globex", "EUR")
    assert changed.exit_code == 0 and "was USD" in changed.output
    refused = run_cli(
        "roas", "--org", "globex", "--from", E1.isoformat(), "--to", E2.isoformat(), "--currency", "reporting"
    )
    assert refused.exit_code == 2
    assert "not all in its reporting currency EUR" in refused.output and f"{E1}..{E2} in USD" in refused.output
    compute_roas(globex)
    assert reporting_rows(globex)[(E1, "601")][0] == "EUR"


def test_a_missing_rate_leaves_null_only_the_reporting_amounts_that_need_it(globex: str) -> None:
    """No BRL rate on E1: globex's ROAS is written; the reporting amounts that convert BRL on E1 are NULL
    (602's spend and revenue, 601's and 603's revenue, with roas_reporting), every other value is set."""
    with db.engine_for(globex).begin() as conn:
        conn.execute(fx_table.delete().where(fx_table.c.date == E1, fx_table.c.currency == "BRL"))
    result = Pipeline(globex, None, "http://127.0.0.1:9").run(  # type: ignore[arg-type]
        E1.isoformat(), E2.isoformat(), asset_selection=[dg.AssetKey("meta_roas_by_campaign")]
    )
    assert result.success
    assert reporting_rows(globex) == {
        (E1, "601"): ("USD", D("10.05"), None, None),
        (E2, "601"): ("USD", D("20.00"), D("50.00"), D("2.500000")),
        (E1, "602"): ("USD", None, None, None),
        (E1, "603"): ("USD", D("1.00"), None, None),
    }
    t = ROAS_TABLES["campaign"]
    with db.engine_for(globex).connect() as conn:
        crm = {r.campaign_id: (r.spend, r.revenue, r.roas) for r in conn.execute(sa.select(t).where(t.c.date == E1))}
    assert crm["602"] == (D("100.00"), D("250.00"), D("2.500000"))  # the account's currency needs no rate
    [observation] = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.event_specific_data.asset_observation.asset_key == dg.AssetKey("meta_roas_by_campaign")
    ]
    assert observation.metadata["rows_without_reporting_amounts"].value == 3
    assert observation.metadata["missing_rates"].value == f"globex: BRL on {E1}"
    refused = run_cli(
        "roas", "--org", "globex", "--from", E1.isoformat(), "--to", E2.isoformat(), "--currency", "reporting"
    )
    assert refused.exit_code == 2
    assert f"{E1} without an exchange rate (fx_rates_daily had none)" in refused.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # no SQL of its own
def test_the_five_assets_alone_write_roas_with_no_exchange_rate_feed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    """meta_raw_insights, meta_spend_daily and the three ROAS tables, without fx_rates_daily and with
    the feed unreachable (the README's command before the reporting currency, an ECB outage, an
    air-gapped install): demo-org-1 (USD and EUR ad accounts, reporting in USD) gets all of its ROAS;
    only the reporting amounts that convert EUR are NULL."""
    from metaspend_pipeline.demo import seed_leads_and_sales
    from metaspend_pipeline_tests.dates import day, iso

    seed_leads_and_sales(pipeline.engine, pipeline.sandbox.world, day(1), day(2))
    monkeypatch.setenv("METASPEND_FX_RATES_URL", listener.url)
    five = [dg.AssetKey(k) for k in ("meta_raw_insights", "meta_spend_daily")] + [
        dg.AssetKey(f"meta_roas_by_{g}") for g in ROAS_TABLES
    ]
    result = pipeline.run(iso(1), iso(2), asset_selection=five)
    assert result.success
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}.get("every_organization_written")
    assert listener.connections == 0
    with pipeline.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(fx_table)).scalar_one() == 0
        for group, t in ROAS_TABLES.items():
            rows = conn.execute(sa.select(t).where(t.c.organization_id == "demo-org-1")).all()
            assert {r.currency for r in rows} == {"USD", "EUR"}, group
            assert all(r.spend is not None and r.leads_count is not None for r in rows)
            eur = [r for r in rows if r.currency == "EUR" and (r.spend or r.revenue)]
            usd = [r for r in rows if r.currency == "USD"]
            assert eur and all(r.spend_reporting is None and r.roas_reporting is None for r in eur), group
            assert all(r.reporting_currency == "USD" and r.spend_reporting == r.spend for r in usd), group
            assert any(r.meta_purchases for r in rows) and any(r.roas for r in rows), group


# --- the commands -------------------------------------------------------------------------------


def test_connect_with_a_reporting_currency_and_change_it(env: dict[str, str], fake_token: str) -> None:
    connect = ("accounts", "connect", "--org", "org-fx", "--ad-account", "act_5")
    result = run_cli(*connect, "--reporting-currency", "eur", stdin=fake_token + "\n")
    assert result.exit_code == 0, result.output
    assert "reporting currency EUR" in result.output
    [row] = json.loads(run_cli("accounts", "list", "--format", "json").output)
    assert row["reportingCurrency"] == "EUR"
    # reconnecting without the option keeps it
    assert run_cli(*connect, stdin=fake_token + "\n").exit_code == 0
    assert "EUR" in run_cli("accounts", "list").output

    assert run_cli("accounts", "set-reporting-currency", "--org", "org-fx", "BRL").exit_code == 0
    [row] = json.loads(run_cli("accounts", "list", "--format", "json").output)
    assert row["reportingCurrency"] == "BRL"

    for bad, named in (("EURO", "'EURO'"), ("ARS", "ARS")):
        refused = run_cli("accounts", "set-reporting-currency", "--org", "org-fx", bad)
        assert refused.exit_code == 2 and named in refused.output
    refused = run_cli(*connect[:3], "org-new", "--ad-account", "act_6", "--reporting-currency", "XYZ", stdin=fake_token)
    assert refused.exit_code == 2 and "XYZ" in refused.output
    unknown = run_cli("accounts", "set-reporting-currency", "--org", "nobody", "EUR")
    assert unknown.exit_code == 2 and "nobody" in unknown.output


def test_the_default_reporting_currency_is_the_ad_accounts_own_when_they_share_one() -> None:
    assert fx.default_reporting_currency(["JPY", "jpy"]) == ("JPY", "the currency of its ad accounts")
    assert fx.default_reporting_currency(["EUR"]) == ("EUR", "the currency of its ad accounts")
    assert fx.default_reporting_currency(["USD", "EUR"]) == ("USD", "its ad accounts are in EUR, USD")
    assert fx.default_reporting_currency(["JPY", "INR"]) == ("USD", "its ad accounts are in INR, JPY")
    assert fx.default_reporting_currency(["ARS"]) == ("USD", "its ad accounts' ARS has no ECB reference rate")


def test_connect_gives_a_new_organization_its_ad_accounts_currency(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str
) -> None:
    """Read from Meta (the sandbox): the ad account named, or those the token lists."""
    tokens = {o.organization_id: o.token for o in sandbox.world.organizations}
    brl = run_cli(
        "accounts", "connect", "--org", "org-br", "--ad-account", "act_2000000001", stdin=tokens["demo-org-2"]
    )
    assert brl.exit_code == 0, brl.output
    assert brl.output.endswith("reporting currency BRL (the currency of its ad accounts)\n")
    mixed = run_cli("accounts", "connect", "--org", "org-mixed", stdin=tokens["demo-org-1"])  # discovered
    assert mixed.output.endswith("reporting currency USD (its ad accounts are in EUR, USD)\n")
    # a reconnection keeps the organization's setting, even with ad accounts in another currency
    again = run_cli(
        "accounts", "connect", "--org", "org-br", "--ad-account", "act_1000000002", stdin=tokens["demo-org-1"]
    )
    assert again.output.endswith("reporting currency BRL\n")
    listed = {
        r["organizationId"]: r["reportingCurrency"]
        for r in json.loads(run_cli("accounts", "list", "--format", "json").output)
    }
    assert listed == {"org-br": "BRL", "org-mixed": "USD"}


def test_an_organization_whose_currencies_meta_cannot_tell_reports_in_usd_until_it_can(
    env: dict[str, str], sandbox: Sandbox, sandbox_endpoint: str, fake_token: str
) -> None:
    """A token Meta rejects (or Meta out of reach): connected all the same, in USD, saying why; no setting
    is stored, so the next connection with a token Meta accepts sets the ad accounts' own."""
    result = run_cli("accounts", "connect", "--org", "org-jp", "--ad-account", "act_3000000002", stdin=fake_token)
    assert result.exit_code == 0, result.output
    assert "reporting currency USD (the default: the ad accounts' currencies could not be read from Meta (ad " \
        "account act_3000000002: Meta rejected the access token (HTTP 400, code 190/467" in result.output  # fmt: skip
    assert fake_token not in result.output
    sandbox.add_token(fake_token, "demo-org-3")
    result = run_cli("accounts", "connect", "--org", "org-jp", "--ad-account", "act_3000000002", stdin=fake_token)
    assert result.output.endswith("reporting currency JPY (the currency of its ad accounts)\n")


def test_the_pipeline_converts_the_sandbox_spend_at_the_sandbox_rates(pipeline: Pipeline) -> None:
    """meta_spend_job end to end: demo-org-1 spends in USD and EUR and reports in USD."""
    from metaspend_pipeline_tests.dates import day, iso

    assert pipeline.run(iso(1), iso(3)).success
    t = ROAS_TABLES["campaign"]
    with pipeline.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t).where(t.c.organization_id == "demo-org-1", t.c.date.between(day(1), day(3)))
        ).all()
    assert {r.currency for r in rows} == {"USD", "EUR"}
    for r in rows:
        _, rates = pipeline.sandbox.ecb.filled(r.date)
        rates = {**rates, "EUR": D(1)}
        assert r.reporting_currency == "USD"
        assert r.spend_reporting == fx.convert(r.spend, rates[r.currency], rates["USD"]), r
        if r.revenue is not None:
            assert r.revenue_reporting == fx.convert(r.revenue, rates[r.currency], rates["USD"]), r


# --- hostile feeds through the asset (the cases themselves: test_fx_feed.py) --------------------


@pytest.mark.parametrize(
    ("db_url", "case"),
    [("sqlite", rate_case("\u0661_0838")), ("postgres", currency_case("<SCRIPT>"))],
    indirect=["db_url"],
    ids=["sqlite-rate", "postgres-currency"],
)
def test_a_bad_feed_fails_the_asset_naming_it_and_stores_nothing(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: FxFeed
) -> None:
    """Before: SQLite stored USD = 11.0838 from Arabic-Indic digits and an underscore; PostgreSQL
    failed with a bare StringDataRightTruncation on the currency `<SCRIPT>`."""
    url = env["METASPEND_DATABASE_URL"]
    day = dt.date.fromisoformat(FEED_DAY)
    with db.engine_for(url).begin() as conn:
        conn.execute(
            fx_table.insert(),
            [
                {"date": day, "currency": c, "rate": D(r), "ecb_date": day, "fetched_at": NOW}
                for c, r in RATES[E1].items()
            ],
        )
    before = stored_rates(url)
    feed = tmp_path / "eurofxref-hist.xml"
    feed.write_bytes(case.body())
    monkeypatch.setenv("METASPEND_FX_RATES_URL", feed.as_uri())
    result = materialize_rates(url, day, day)
    assert not result.success
    assert failure_of(result) == case.message.replace(FEED, feed.as_uri())
    assert stored_rates(url) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_api_key_in_the_feed_url_is_never_shown(
    env: dict[str, str], sandbox_endpoint: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The URL is read with its query string and shown without it: the run's log line, its metadata
    (`source`) and what the process printed."""
    since, until = around_a_holiday()
    monkeypatch.setenv("METASPEND_FX_RATES_URL", f"{sandbox_endpoint}{SANDBOX_ECB_PATH}?api_key={FX_API_KEY}")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [fx_rates_daily],
            resources={"warehouse": WarehouseResource(database_url=env["METASPEND_DATABASE_URL"])},
            tags={
                "dagster/asset_partition_range_start": since.isoformat(),
                "dagster/asset_partition_range_end": until.isoformat(),
            },
            instance=instance,
        )
        records = "\n".join(repr(r) for r in instance.all_logs(result.run_id))
    assert result.success
    [materialization, *_] = result.get_asset_materialization_events()
    source = materialization.materialization.metadata["source"].value
    assert source.startswith(sandbox_endpoint) and source.endswith("?[REDACTED]")
    assert "reading the ECB's reference rates from" in records and "?[REDACTED]" in records
    printed = capfd.readouterr()
    assert FX_API_KEY not in records + printed.out + printed.err
