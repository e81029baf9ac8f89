"""The spend anomaly checks warn exactly at their documented boundaries, on SQLite and PostgreSQL.

Data is written as a fetch writes it (raw rows, the fetch log, then `meta_spend_daily` rebuilt by
the spend merge); the checks run as the plain functions, then as asset checks through Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa

from metaspend_pipeline import anomalies
from metaspend_pipeline.credentials import store_connection
from metaspend_pipeline.definitions import load
from metaspend_pipeline.defs.common.resources import WarehouseResource
from metaspend_pipeline.meta.models import InsightRow
from metaspend_pipeline.settings import AnomalySettings, SettingsError
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage.accounts import first_connections, record_first_connection
from metaspend_pipeline.storage.schema import meta_ad_account
from metaspend_pipeline.storage.spend import refresh_spend
from metaspend_pipeline.tokens import KeyRing, generate_key, parse_key
from metaspend_pipeline_tests.conftest import Pipeline
from metaspend_pipeline_tests.dates import day, iso

ORG = "org-anomalies"
A1, A2 = "act_5000000001", "act_5000000002"
DEFAULTS = AnomalySettings()
CHECKED = day(10)


def spend_of(amount: str | Decimal) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))


def fetch(
    engine: sa.Engine,
    account: str,
    since: dt.date,
    until: dt.date,
    spend: Mapping[dt.date, str],
    *,
    status: str = "OK",
    organization: str = ORG,
) -> None:
    """What a fetch of [since, until] leaves: an ACCOUNT and a CAMPAIGN row for each day in `spend`
    (Meta sends none for a day without delivery), the fetch logged, then meta_spend_daily rebuilt."""
    days = {d: spend_of(v) for d, v in spend.items() if since <= d <= until}
    with engine.begin() as conn:
        if status == "OK":
            for level, campaign in (("ACCOUNT", None), ("CAMPAIGN", "12" + account.removeprefix("act_"))):
                rows = [
                    InsightRow(account, level, d, campaign, None, None, "USD", v, 100, 1, {"date_start": d.isoformat()})
                    for d, v in sorted(days.items())
                ]
                raw_store.replace_raw_insights(
                    conn,
                    organization_id=organization,
                    provider="FACEBOOK",
                    ad_account_id=account,
                    level=level,
                    since=since,
                    until=until,
                    rows=rows,
                    fetched_at=dt.datetime.now(dt.UTC),
                )
        raw_store.log_fetch(
            conn,
            "test-run",
            raw_store.FetchOutcome(organization, account, since, until, status, rows=len(days) * 2),
        )
        refresh_spend(conn, organization, [account], since, until, dt.datetime.now(dt.UTC))


def run_fetches(engine: sa.Engine, account: str, first: dt.date, spend: Mapping[dt.date, str]) -> None:
    """One fetch per day from `first` to CHECKED, as daily scheduled runs do."""
    d = first
    while d <= CHECKED:
        fetch(engine, account, d, d, spend)
        d += dt.timedelta(days=1)


def days_before(n: int, amount: str = "10.00") -> dict[dt.date, str]:
    return {CHECKED - dt.timedelta(days=k): amount for k in range(1, n + 1)}


# --- stopped spending ---------------------------------------------------------------------------


@pytest.mark.parametrize("checked_day", ["no rows", "rows of 0"])
def test_seven_days_of_spend_then_none_warns(engine: sa.Engine, checked_day: str) -> None:
    spend = {**days_before(7), CHECKED - dt.timedelta(days=1): "12.34"}
    if checked_day == "rows of 0":
        spend[CHECKED] = "0"
    fetch(engine, A1, CHECKED - dt.timedelta(days=7), CHECKED, spend)
    with engine.connect() as conn:
        found = anomalies.stopped_spending(conn, CHECKED, CHECKED, DEFAULTS)
    [finding] = found.findings
    assert (finding.organization_id, finding.ad_account_id, finding.date) == (ORG, A1, CHECKED)
    assert f"{CHECKED - dt.timedelta(days=7)}..{CHECKED - dt.timedelta(days=1)}: 72.34 USD in all" in str(finding)
    assert "12.34 USD the day before" in str(finding)
    assert finding.figures == {"spend": Decimal("0.00"), "spend_days_before": Decimal("72.34"), "days_before": 7}
    assert found.figures == {"ad_accounts_stopped": 1, "ad_accounts": 1}


def test_six_days_of_spend_then_none_does_not_warn(engine: sa.Engine) -> None:
    fetch(engine, A1, CHECKED - dt.timedelta(days=7), CHECKED, days_before(6))
    with engine.connect() as conn:
        assert anomalies.stopped_spending(conn, CHECKED, CHECKED, DEFAULTS).findings == []


def test_a_stop_warns_on_its_first_day_only_and_not_while_spending(engine: sa.Engine) -> None:
    fetch(engine, A1, CHECKED - dt.timedelta(days=10), CHECKED, days_before(10))
    fetch(engine, A1, CHECKED + dt.timedelta(days=1), CHECKED + dt.timedelta(days=3), {})
    with engine.connect() as conn:
        found = anomalies.stopped_spending(
            conn, CHECKED - dt.timedelta(days=2), CHECKED + dt.timedelta(days=3), DEFAULTS
        )
    assert [f.date for f in found.findings] == [CHECKED]


def test_a_day_not_loaded_is_not_a_stop(engine: sa.Engine) -> None:
    fetch(engine, A1, CHECKED - dt.timedelta(days=7), CHECKED - dt.timedelta(days=1), days_before(7))
    with engine.connect() as conn:
        assert anomalies.stopped_spending(conn, CHECKED, CHECKED, DEFAULTS).findings == []
    fetch(engine, A1, CHECKED, CHECKED, {}, status="FAILED")
    with engine.connect() as conn:
        assert anomalies.stopped_spending(conn, CHECKED, CHECKED, DEFAULTS).findings == []


# --- spend against the trailing median ----------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "warns"),
    [("50.00", False), ("50.01", True), ("2.00", False), ("1.99", True), ("10.00", False)],
    ids=["exactly 5x", "just above 5x", "exactly 0.2x", "just below 0.2x", "at the median"],
)
def test_spend_warns_strictly_outside_the_band(engine: sa.Engine, amount: str, warns: bool) -> None:
    # 7 days with spend among the 28 before (the minimum), around a median of 10.00; days without
    # spend do not count, so the median is not dragged to 0 by an account that pauses
    history = {
        CHECKED - dt.timedelta(days=k): v
        for k, v in zip((1, 3, 5, 8, 13, 21, 28), ("9", "10", "10", "10", "11", "40", "1"), strict=True)
    }
    fetch(engine, A1, CHECKED - dt.timedelta(days=28), CHECKED, {**history, CHECKED: amount})
    with engine.connect() as conn:
        found = anomalies.spend_outliers(conn, CHECKED, CHECKED, DEFAULTS)
    ratio = Decimal(amount) / 10
    assert found.figures["max_ratio"] == found.figures["min_ratio"] == ratio
    assert found.figures["ad_account_days_compared"] == 1
    if not warns:
        assert found.findings == []
        return
    [finding] = found.findings
    assert (finding.organization_id, finding.ad_account_id, finding.date) == (ORG, A1, CHECKED)
    assert finding.figures == {"spend": Decimal(amount), "median": Decimal("10.00"), "ratio": ratio, "history_days": 7}
    rule = "above 5x" if ratio > 1 else "below 0.2x"
    assert f"spend {amount} USD is {ratio.quantize(Decimal('0.001'))}x the median 10.00 USD of its 7 days" in str(
        finding
    )
    assert rule in str(finding)
    assert found.figures["spikes" if ratio > 1 else "drops"] == 1


def test_an_ad_account_with_too_little_history_does_not_warn(engine: sa.Engine) -> None:
    # 6 days with spend before: one short of METASPEND_ANOMALY_MIN_HISTORY_DAYS (7)
    fetch(engine, A1, CHECKED - dt.timedelta(days=28), CHECKED, {**days_before(6), CHECKED: "1000.00"})
    with engine.connect() as conn:
        found = anomalies.spend_outliers(conn, CHECKED, CHECKED, DEFAULTS)
    assert found.findings == []
    assert found.figures["ad_account_days_short_history"] == 1
    assert "max_ratio" not in found.figures


def test_only_the_median_days_before_count(engine: sa.Engine) -> None:
    """Spend 29 days before is outside the 28-day window: 6 days inside are too few."""
    spend = {**days_before(6), CHECKED - dt.timedelta(days=29): "10.00", CHECKED: "1000.00"}
    fetch(engine, A1, CHECKED - dt.timedelta(days=29), CHECKED, spend)
    with engine.connect() as conn:
        assert anomalies.spend_outliers(conn, CHECKED, CHECKED, DEFAULTS).findings == []
        wider = AnomalySettings(median_days=30)
        assert [f.date for f in anomalies.spend_outliers(conn, CHECKED, CHECKED, wider).findings] == [CHECKED]


# --- a day loaded for some ad accounts and not others -------------------------------------------


def test_a_day_missing_for_one_of_two_ad_accounts_warns_naming_it(engine: sa.Engine) -> None:
    spend = days_before(3)
    fetch(engine, A1, CHECKED - dt.timedelta(days=3), CHECKED, spend)
    fetch(engine, A2, CHECKED - dt.timedelta(days=3), CHECKED - dt.timedelta(days=1), spend)
    with engine.connect() as conn:
        found = anomalies.missing_ad_accounts(conn, CHECKED - dt.timedelta(days=3), CHECKED, DEFAULTS)
    [finding] = found.findings
    assert (finding.organization_id, finding.ad_account_id, finding.date) == (ORG, A2, CHECKED)
    assert f"not loaded (not fetched) while 1 other ad account(s) of the organization are ({A1})" in str(finding)
    assert f"last loaded {CHECKED - dt.timedelta(days=1)}" in str(finding)
    assert finding.figures == {"ad_accounts_loaded": 1, "ad_accounts_missing": 1}
    assert found.figures == {"organization_days_incomplete": 1, "ad_accounts": 2}


def test_a_failed_fetch_is_named_and_a_later_success_clears_it(engine: sa.Engine) -> None:
    fetch(engine, A1, CHECKED, CHECKED, {CHECKED: "5.00"})
    fetch(engine, A2, CHECKED - dt.timedelta(days=1), CHECKED - dt.timedelta(days=1), {})
    fetch(engine, A2, CHECKED, CHECKED, {}, status="FAILED")
    with engine.connect() as conn:
        [finding] = anomalies.missing_ad_accounts(conn, CHECKED, CHECKED, DEFAULTS).findings
    assert finding.ad_account_id == A2
    assert "not loaded (its fetch failed)" in finding.detail
    fetch(engine, A2, CHECKED, CHECKED, {})  # loaded, with zero spend: Meta sent no rows
    with engine.connect() as conn:
        assert anomalies.missing_ad_accounts(conn, CHECKED, CHECKED, DEFAULTS).findings == []


def test_every_ad_account_loaded_passes_and_other_organizations_do_not_mix(engine: sa.Engine) -> None:
    fetch(engine, A1, CHECKED - dt.timedelta(days=1), CHECKED, days_before(1))
    fetch(engine, A2, CHECKED - dt.timedelta(days=1), CHECKED, {})
    fetch(
        engine,
        "act_5000000003",
        CHECKED - dt.timedelta(days=1),
        CHECKED - dt.timedelta(days=1),
        {},
        organization="org-other",
    )
    with engine.connect() as conn:
        found = anomalies.missing_ad_accounts(conn, CHECKED - dt.timedelta(days=1), CHECKED, DEFAULTS)
    # org-other's only ad account is missing on CHECKED, but nothing of it is loaded that day: not "some"
    assert found.findings == []
    assert found.figures == {"organization_days_incomplete": 0, "ad_accounts": 3}


def test_a_new_ad_account_is_missing_only_from_when_it_was_connected_or_loaded(engine: sa.Engine) -> None:
    """The hand check of 2026-12-06: A2 joined an organization whose A1 had been loaded for days. A range
    check over those days does not call A2 "not loaded" before it was first connected (its own day, in
    its own time zone) or first loaded, whichever came first."""
    first = CHECKED - dt.timedelta(days=10)
    run_fetches(engine, A1, first, {})
    fetch(engine, A2, CHECKED - dt.timedelta(days=1), CHECKED, {})  # its first fetch, after joining

    def missing() -> list[dt.date]:
        with engine.connect() as conn:
            return [f.date for f in anomalies.missing_ad_accounts(conn, first, CHECKED, DEFAULTS).findings]

    assert missing() == []  # loaded from its first day on; nothing known of it before
    # connected at 23:30 UTC three days before, which is the next morning in Tokyo, its time zone
    joined = dt.datetime.combine(CHECKED - dt.timedelta(days=3), dt.time(23, 30), dt.UTC)
    with engine.begin() as conn:
        record_first_connection(conn, ORG, [A2], joined)
        conn.execute(
            meta_ad_account.insert().values(
                ad_account_id=A2, currency="USD", timezone_name="Asia/Tokyo", updated_at=joined
            )
        )
    assert missing() == [CHECKED - dt.timedelta(days=2)]
    # a backfill of older days loads some of them: it is expected from its first loaded day on
    fetch(engine, A2, CHECKED - dt.timedelta(days=6), CHECKED - dt.timedelta(days=5), {})
    assert missing() == [CHECKED - dt.timedelta(days=d) for d in (4, 3, 2)]


def test_a_reconnection_records_when_each_ad_account_joined(engine: sa.Engine) -> None:
    """Each ad account's first connection is kept across reconnections, providers and disconnection."""
    keyring = KeyRing(parse_key(generate_key(), "a test key"))
    with engine.begin() as conn:
        store_connection(conn, keyring, ORG, "FACEBOOK", [A1], "EAAfirst000000", None)
    with engine.connect() as conn:
        before = first_connections(conn)
    with engine.begin() as conn:
        store_connection(conn, keyring, ORG, "FACEBOOK", [A1, A2], "EAAsecond00000", None)
        store_connection(conn, keyring, ORG, "INSTAGRAM", [A2], "EAAthird000000", None)
        store_connection(conn, keyring, "org-other", "FACEBOOK", [A1], "EAAfourth00000", None)
    with engine.connect() as conn:
        after = first_connections(conn)
        assert first_connections(conn, [ORG]).keys() == {(ORG, A1), (ORG, A2)}
    assert after[(ORG, A1)] == before[(ORG, A1)]
    assert after[(ORG, A2)] >= before[(ORG, A1)] and after[("org-other", A1)] >= after[(ORG, A2)]


# --- settings -----------------------------------------------------------------------------------


def test_the_thresholds_default_as_documented() -> None:
    assert AnomalySettings.from_env({}) == AnomalySettings(
        stopped_days=7, spike_ratio=Decimal("5"), drop_ratio=Decimal("0.2"), median_days=28, min_history_days=7
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "METASPEND_ANOMALY_SPIKE_RATIO",
            "five",
            "METASPEND_ANOMALY_SPIKE_RATIO must be a number such as 5, got 'five'",
        ),
        ("METASPEND_ANOMALY_SPIKE_RATIO", "1", "METASPEND_ANOMALY_SPIKE_RATIO must be more than 1, got 1"),
        ("METASPEND_ANOMALY_DROP_RATIO", "1.5", "METASPEND_ANOMALY_DROP_RATIO must be at least 0 and less than 1"),
        ("METASPEND_ANOMALY_STOPPED_DAYS", "0", "METASPEND_ANOMALY_STOPPED_DAYS must be at least 1, got 0"),
        ("METASPEND_ANOMALY_MEDIAN_DAYS", "x", "METASPEND_ANOMALY_MEDIAN_DAYS must be a whole number"),
        ("METASPEND_ANOMALY_MIN_HISTORY_DAYS", "29", "METASPEND_ANOMALY_MIN_HISTORY_DAYS (29) must be at most"),
    ],
)
def test_a_bad_threshold_is_refused_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AnomalySettings.from_env({name: value})


def test_ratios_are_read_exactly() -> None:
    settings = AnomalySettings.from_env({"METASPEND_ANOMALY_SPIKE_RATIO": "2.5", "METASPEND_ANOMALY_DROP_RATIO": "0.1"})
    assert (settings.spike_ratio, settings.drop_ratio) == (Decimal("2.5"), Decimal("0.1"))


# --- as asset checks, through Dagster -----------------------------------------------------------

ANOMALY_CHECKS = ("no_stopped_spending", "spend_near_trailing_median", "every_ad_account_loaded")


def run_anomaly_checks(db_url: str, since: dt.date, until: dt.date) -> dict[str, dg.AssetCheckEvaluation]:
    """meta_spend_checks_job over [since, until] (its run config), as `dagster job launch` runs it."""
    check_range = {"config": {"since": since.isoformat(), "until": until.isoformat()}}
    result = (
        load()
        .resolve_job_def("meta_spend_checks_job")
        .execute_in_process(
            resources={"warehouse": WarehouseResource(database_url=db_url)},
            run_config={
                "ops": {
                    "meta_spend_daily_checks": check_range,
                    "meta_spend_anomaly_checks": check_range,
                    "meta_roas_checks": check_range,
                }
            },
        )
    )
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.check_name in ANOMALY_CHECKS}


def test_the_checks_warn_with_the_figures_as_metadata(env: dict[str, str], db_url: str, engine: sa.Engine) -> None:
    spend = {**days_before(7), CHECKED - dt.timedelta(days=8): "10.00"}
    fetch(engine, A1, CHECKED - dt.timedelta(days=8), CHECKED, spend)  # stopped on CHECKED
    fetch(
        engine,
        A2,
        CHECKED - dt.timedelta(days=8),
        CHECKED - dt.timedelta(days=1),
        {**spend, CHECKED - dt.timedelta(days=1): "80.00"},
    )
    evaluations = run_anomaly_checks(db_url, CHECKED - dt.timedelta(days=1), CHECKED)
    assert set(evaluations) == set(ANOMALY_CHECKS)
    for evaluation in evaluations.values():
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["problems"].value == 1
        assert evaluation.metadata["checked_range"].value == f"{CHECKED - dt.timedelta(days=1)}..{CHECKED}"

    stopped = evaluations["no_stopped_spending"]
    assert f"organization {ORG}, ad account {A1}, {CHECKED}: stopped spending: no spend rows" in stopped.description
    assert stopped.metadata["ad_accounts_stopped"].value == 1
    assert stopped.metadata["findings"].value == [
        {
            "organization_id": ORG,
            "ad_account_id": A1,
            "date": CHECKED.isoformat(),
            "spend": "0.00",
            "spend_days_before": "70.00",
            "days_before": 7,
        }
    ]

    outlier = evaluations["spend_near_trailing_median"]
    spiked = CHECKED - dt.timedelta(days=1)
    assert f"ad account {A2}, {spiked}: spend 80.00 USD is 8.000x the median 10.00 USD" in outlier.description
    assert outlier.metadata["max_ratio"].value == 8.0  # a float, which the UI plots
    assert outlier.metadata["spikes"].value == 1
    [row] = outlier.metadata["findings"].value
    assert (row["spend"], row["median"], row["ratio"]) == ("80.00", "10.00", "8")

    missing = evaluations["every_ad_account_loaded"]
    assert f"ad account {A2}, {CHECKED}: not loaded (not fetched)" in missing.description
    assert missing.metadata["organization_days_incomplete"].value == 1


def test_thresholds_from_the_environment_change_the_outcome(
    env: dict[str, str], db_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetch(engine, A1, CHECKED - dt.timedelta(days=8), CHECKED, {**days_before(8), CHECKED: "30.00"})
    default = run_anomaly_checks(db_url, CHECKED, CHECKED)
    assert default["spend_near_trailing_median"].passed  # 3x
    assert default["no_stopped_spending"].passed
    monkeypatch.setenv("METASPEND_ANOMALY_SPIKE_RATIO", "2.5")  # read when the check runs: no reload
    changed = run_anomaly_checks(db_url, CHECKED, CHECKED)
    assert not changed["spend_near_trailing_median"].passed
    assert "(above 2.5x)" in changed["spend_near_trailing_median"].description
    monkeypatch.setenv("METASPEND_ANOMALY_MIN_HISTORY_DAYS", "9")
    assert run_anomaly_checks(db_url, CHECKED, CHECKED)["spend_near_trailing_median"].passed


def test_a_bad_threshold_fails_the_check_step_naming_the_variable(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASPEND_ANOMALY_DROP_RATIO", "-1")
    check_range = {"config": {"since": iso(1), "until": iso(1)}}
    result = (
        load()
        .resolve_job_def("meta_spend_checks_job")
        .execute_in_process(
            resources={"warehouse": WarehouseResource(database_url=env["METASPEND_DATABASE_URL"])},
            run_config={
                "ops": {
                    "meta_spend_daily_checks": check_range,
                    "meta_spend_anomaly_checks": check_range,
                    "meta_roas_checks": check_range,
                }
            },
            raise_on_error=False,
        )
    )
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "meta_spend_anomaly_checks"
    assert "METASPEND_ANOMALY_DROP_RATIO must be at least 0" in failure.step_failure_data.user_failure_data.description


def test_a_partition_run_of_the_pipeline_runs_the_checks_and_warns_on_an_ad_account_left_out(
    pipeline: Pipeline,
) -> None:
    """Materialized through Dagster against the sandbox: every day loaded passes; a day fetched for
    one of demo-org-1's two ad accounts warns, naming the other."""
    first = pipeline.run(iso(1), iso(3))
    assert first.success
    evaluations = {e.check_name: e for e in first.get_asset_check_evaluations() if e.check_name in ANOMALY_CHECKS}
    assert set(evaluations) == set(ANOMALY_CHECKS)
    assert all(e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in evaluations.values())
    assert evaluations["every_ad_account_loaded"].metadata["ad_accounts"].value == 5

    only_one = {"ops": {"meta_raw_insights": {"config": {"ad_accounts": ["act_1000000001"]}}}}
    second = pipeline.run(iso(4), run_config=only_one)
    assert second.success
    [missing] = [e for e in second.get_asset_check_evaluations() if e.check_name == "every_ad_account_loaded"]
    assert not missing.passed
    assert missing.severity == dg.AssetCheckSeverity.WARN
    assert (
        f"organization demo-org-1, ad account act_1000000002, {iso(4)}: not loaded (not fetched)" in missing.description
    )
    assert f"last loaded {iso(3)}" in missing.description
    assert missing.metadata["problems"].value == 1  # the other organizations: nothing loaded that day, no warning
