"""Bad values from Meta and from the environment: refused with a message naming them, before
anything stored is replaced. The cases live in `bad_inputs.py`, which docs/bad-inputs.md is
rendered from."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from metaspend_pipeline import currency
from metaspend_pipeline.cli import cli
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.meta.parsing import MAX_ACTION_TYPES, parse_insight_row
from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import Money, connected_account, meta_raw_insights, meta_spend_daily
from metaspend_pipeline_tests.bad_inputs import (
    CLI_ARGUMENTS,
    DAY,
    ENV_VALUES,
    META_VALUES,
    CliArguments,
    EnvValue,
    MetaValue,
    render,
)
from metaspend_pipeline_tests.conftest import Pipeline, ascii_id

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
FETCH_ORDER = ("account", "campaign", "adset", "ad")  # ingest.LEVELS: the order the fetch asks for levels


def _token(sandbox: Sandbox, account: str) -> str:
    return next(o.token for o in sandbox.world.organizations if account in o.ad_accounts)


def _organization(sandbox: Sandbox, account: str) -> str:
    return next(o.organization_id for o in sandbox.world.organizations if account in o.ad_accounts)


@pytest.mark.parametrize("case", META_VALUES, ids=lambda c: ascii_id(f"{c.field}={c.value!r}"))
def test_a_bad_value_from_meta_fails_the_fetch_naming_account_date_and_field(
    sandbox: Sandbox, api_settings: MetaApiSettings, case: MetaValue
) -> None:
    # every attempt gets the bad row: a loaded machine's first read can time out and be retried
    fault = {"kind": "corrupt_row", "match": f"{case.account}/insights", "field": case.field, "value": case.value}
    sandbox.add_faults([{**fault, "times": 1000}])
    day = dt.date.fromisoformat(DAY)
    client = MetaClient(_token(sandbox, case.account), api_settings)
    with pytest.raises(MetaDataError) as info:
        list(client.insights(case.account, case.level, day, day, use_async=False))
    assert str(info.value) == case.full_message
    assert info.value.ad_account_id == case.account


_RAW_CONTENT = [c for c in meta_raw_insights.c if c.name not in {"id", "fetched_at"}]
_SPEND_CONTENT = [c for c in meta_spend_daily.c if c.name not in {"id", "created_at", "updated_at"}]


def _stored(engine: sa.Engine, columns: tuple[list, list] | None = None) -> tuple[list[tuple], list[tuple]]:
    """Both tables, every column, or only the given ones, in a stable order."""
    raw_columns, spend_columns = columns or (list(meta_raw_insights.c), list(meta_spend_daily.c))
    with engine.connect() as conn:
        raw = conn.execute(sa.select(*raw_columns)).all()
        spend = conn.execute(sa.select(*spend_columns)).all()
    return sorted(map(repr, raw)), sorted(map(repr, spend))


def test_bad_values_from_meta_leave_the_stored_rows_untouched(pipeline: Pipeline) -> None:
    """Each case against a day loaded before: the run fails naming the value, nothing stored changes.

    A bad value in the account-level page (the first the fetch asks for) leaves every row as it
    was, ids and timestamps included. The fetch stores each level of an ad account as it arrives,
    so a bad campaign row comes after the account level was rewritten with the same rows: there
    the content is compared, without row ids and fetch times.
    """
    assert pipeline.run(DAY).success
    for case in META_VALUES:
        columns = None if case.level == "account" else (_RAW_CONTENT, _SPEND_CONTENT)
        before = _stored(pipeline.engine, columns)
        assert before[0] and before[1]
        pipeline.sandbox.add_faults(
            [
                {
                    "kind": "corrupt_row",
                    "match": f"{case.account}/insights",
                    "skip": FETCH_ORDER.index(case.level),
                    "field": case.field,
                    "value": case.value,
                }
            ]
        )
        config = {"ops": {"meta_raw_insights": {"config": {"ad_accounts": [case.account]}}}}
        result = pipeline.run(DAY, run_config=config)
        assert not result.success, case
        failures = "\n".join(
            e.event_specific_data.error.to_string() for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        )
        assert case.full_message in failures
        assert f"organization {_organization(pipeline.sandbox, case.account)}" in failures
        assert _stored(pipeline.engine, columns) == before, case


@pytest.mark.parametrize(
    ("currency_code", "value", "expected"),
    [
        ("USD", "9999999999999999.99", Decimal("9999999999999999.99")),  # the largest NUMERIC(18, 2)
        ("USD", "0.10", Decimal("0.10")),
        ("USD", "7", Decimal(7)),
        ("JPY", "1234", Decimal(1234)),
        ("KRW", "0", Decimal(0)),
        ("BHD", "1.230", Decimal("1.230")),  # three decimals, the third a zero: stored without rounding
        ("XYZ", "1.25", Decimal("1.25")),  # unknown currency: two decimals
    ],
)
def test_amounts_within_the_rules_are_kept_exactly(currency_code: str, value: str, expected: Decimal) -> None:
    day = dt.date.fromisoformat(DAY)
    raw = {"date_start": DAY, "date_stop": DAY, "account_currency": currency_code, "spend": value}
    row = parse_insight_row(raw, "act_1", "account", day, day)
    assert row.spend == expected
    assert str(row.spend) == value  # never re-scaled


@pytest.mark.parametrize(
    ("currency_code", "value", "message"),
    [
        ("BHD", "1.234", "field spend '1.234' has 3 decimals; the warehouse stores 2, and amounts are never rounded"),
        ("XYZ", "1.255", "field spend '1.255' has 3 decimals; XYZ has 2, and amounts are never rounded"),
        ("CLP", "5.0", "field spend '5.0' has 1 decimal; CLP has 0, and amounts are never rounded"),
    ],
)
def test_amounts_the_currency_or_the_column_cannot_hold_are_refused(
    currency_code: str, value: str, message: str
) -> None:
    day = dt.date.fromisoformat(DAY)
    raw = {"date_start": DAY, "account_currency": currency_code, "spend": value}
    with pytest.raises(MetaDataError) as info:
        parse_insight_row(raw, "act_1", "account", day, day)
    assert str(info.value) == f"ad account act_1, account row of {DAY}: {message}"


def test_counts_up_to_the_largest_bigint_are_kept() -> None:
    day = dt.date.fromisoformat(DAY)
    raw = {"date_start": DAY, "account_currency": "USD", "spend": "1.00", "impressions": str(2**63 - 1)}
    assert parse_insight_row(raw, "act_1", "account", day, day).impressions == 2**63 - 1


def test_a_count_of_thousands_of_digits_is_out_of_range_not_a_crash() -> None:
    """int() refuses more than 4300 digits with a bare ValueError; the parser answers first."""
    day = dt.date.fromisoformat(DAY)
    raw = {"date_start": DAY, "account_currency": "USD", "spend": "1.00", "clicks": "9" * 5000}
    with pytest.raises(MetaDataError, match=r"field clicks '9+' is out of range \(above 2\^63 - 1"):
        parse_insight_row(raw, "act_1", "account", day, day)


def test_the_parser_bounds_are_the_money_column() -> None:
    assert Money.scale == currency.AMOUNT_SCALE
    assert Money.precision - Money.scale == currency.AMOUNT_INTEGER_DIGITS
    assert currency.minor_units("JPY") == 0
    assert currency.minor_units("KWD") == 3
    assert currency.minor_units("USD") == currency.minor_units("ZZZ") == 2


@pytest.mark.parametrize(("name", "value"), [("actions", "1"), ("action_values", "1.00"), ("purchase_roas", "2.5")])
def test_a_row_lists_at_most_1000_action_types(name: str, value: str) -> None:
    """The work one row can cause is bounded: 1,000 action types (Meta has a few hundred) are read,
    one more is refused before any is parsed. Before, 100,000 wrote 1.5M conversion rows."""
    day = dt.date.fromisoformat(DAY)

    def row(count: int) -> dict[str, object]:
        entries = [{"action_type": f"offsite_conversion.custom.{n}", "value": value} for n in range(count)]
        return {"date_start": DAY, "account_currency": "USD", "spend": "1.00", name: entries}

    parsed = parse_insight_row(row(MAX_ACTION_TYPES), "act_1", "account", day, day)
    assert len(parsed.conversions) == (MAX_ACTION_TYPES if name != "purchase_roas" else 0)
    with pytest.raises(MetaDataError) as info:
        parse_insight_row(row(MAX_ACTION_TYPES + 1), "act_1", "account", day, day)
    assert str(info.value) == (
        f"ad account act_1, account row of {DAY}: field {name} lists 1001 entries, more than the 1000 action "
        "types accepted in a row"
    )
    assert MAX_ACTION_TYPES == 1000  # the bound docs/meta-api.md states


@pytest.mark.parametrize("case", ENV_VALUES, ids=lambda c: ascii_id(",".join(f"{k}={v}" for k, v in c.env.items())))
def test_a_bad_environment_value_is_refused_before_any_request(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, case: EnvValue
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    token = "EAAbad" + "9" * 24
    result = CliRunner().invoke(cli, ["accounts", "connect", "--org", "acme"], input=token)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"metaspend: error: {case.message}\n"
    for secret in (token, "hunter2", "EAAsecret"):
        assert secret not in result.output
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(connected_account)).scalar_one() == 0


@pytest.mark.parametrize("case", CLI_ARGUMENTS, ids=lambda c: ascii_id(" ".join(c.args)))
def test_bad_command_line_arguments_exit_2_and_write_nothing(env: dict[str, str], case: CliArguments) -> None:
    token = "EAAbad" + "8" * 24
    result = CliRunner().invoke(cli, list(case.args), input=token)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"metaspend: error: {case.message}\n"
    assert token not in result.output
    with db.engine_for(env["METASPEND_DATABASE_URL"]).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(connected_account)).scalar_one() == 0


def test_docs_bad_inputs_is_rendered_from_the_cases() -> None:
    assert DOC.read_text() == render(), "run: python -m metaspend_pipeline_tests.bad_inputs > docs/bad-inputs.md"
