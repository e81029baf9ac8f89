"""Every bad input tried against the pipeline, with the exact message a user sees.

The tests run these cases (test_bad_inputs.py, test_endpoint.py), and docs/bad-inputs.md is
rendered from them, so the table cannot drift from what the code does:

    python -m metaspend_pipeline_tests.bad_inputs > docs/bad-inputs.md
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from metaspend_pipeline_tests.dates import iso

DAY = iso(5)
DOC_DAY = "2026-10-05"  # the day the page shows: DAY moves with the clock, the page does not
USD_ACCOUNT = "act_1000000001"
JPY_ACCOUNT = "act_3000000002"
ARABIC_INDIC = "\u0661\u0662.\u0665\u0660"  # 12.50 in Arabic-Indic digits, which str.isdigit() accepts
ARABIC_ID = "\u0661\u0662\u0663"
FULLWIDTH_USD = "\uff35\uff33\uff24"


@dataclass(frozen=True)
class MetaValue:
    """One field of one insight row replaced by the sandbox's `corrupt_row` fault."""

    field: str
    value: object
    message: str
    account: str = USD_ACCOUNT
    level: str = "account"

    @property
    def full_message(self) -> str:
        return f"ad account {self.account}, {self.level} row of {DAY}: {self.message}"


@dataclass(frozen=True)
class EnvValue:
    """Environment variables as an operator might set them; `metaspend accounts connect` reads them."""

    env: dict[str, str] = field(hash=False)
    message: str


META_VALUES: list[MetaValue] = [
    MetaValue("spend", "1e20", "field spend '1e20' is not a non-negative amount in plain digits"),
    MetaValue("spend", "1e30", "field spend '1e30' is not a non-negative amount in plain digits"),
    MetaValue("spend", "1E3", "field spend '1E3' is not a non-negative amount in plain digits"),
    MetaValue("spend", "NaN", "field spend 'NaN' is not a non-negative amount in plain digits"),
    MetaValue("spend", "-1.00", "field spend '-1.00' is not a non-negative amount in plain digits"),
    MetaValue("spend", "12,50", "field spend '12,50' is not a non-negative amount in plain digits"),
    MetaValue("spend", "²", "field spend '²' is not a non-negative amount in plain digits"),
    MetaValue("spend", ARABIC_INDIC, f"field spend {ARABIC_INDIC!r} is not a non-negative amount in plain digits"),
    MetaValue("spend", 12.5, "field spend 12.5 is not a decimal string"),
    MetaValue(
        "spend",
        "10000000000000000.00",
        "field spend '10000000000000000.00' is out of range (at most 16 digits before the decimal point)",
    ),
    MetaValue("spend", "0.025", "field spend '0.025' has 3 decimals; USD has 2, and amounts are never rounded"),
    MetaValue(
        "spend",
        "12.5",
        "field spend '12.5' has 1 decimal; JPY has 0, and amounts are never rounded",
        account=JPY_ACCOUNT,
    ),
    MetaValue(
        "impressions",
        str(2**63),
        f"field impressions '{2**63}' is out of range (above 2^63 - 1, the largest BIGINT)",
    ),
    MetaValue("impressions", "-5", "field impressions '-5' is not a whole number"),
    MetaValue("clicks", "²", "field clicks '²' is not a whole number"),
    MetaValue("clicks", "7.5", "field clicks '7.5' is not a whole number"),
    MetaValue("campaign_id", ARABIC_ID, f"field campaign_id is missing or not an id ({ARABIC_ID!r})", level="campaign"),
    MetaValue("campaign_id", None, "field campaign_id is missing or not an id (None)", level="campaign"),
    MetaValue("account_currency", "usd", "field account_currency 'usd' is not a currency code (3 letters A-Z)"),
    MetaValue(
        "account_currency",
        FULLWIDTH_USD,
        f"field account_currency {FULLWIDTH_USD!r} is not a currency code (3 letters A-Z)",
    ),
    MetaValue(
        "actions",
        [{"action_type": "omni_purchase", "value": "2", "7d_click": "1.5"}],
        "field actions[omni_purchase].7d_click '1.5' is not a whole number",
    ),
    MetaValue(
        "actions",
        [{"action_type": "lead", "value": "-1"}],
        "field actions[lead].value '-1' is not a whole number",
    ),
    MetaValue(
        "action_values",
        [{"action_type": "omni_purchase", "value": "19.999"}],
        "field action_values[omni_purchase].value '19.999' has 3 decimals; USD has 2, and amounts are never rounded",
    ),
    MetaValue(
        "action_values",
        [{"action_type": "omni_purchase", "1d_view": "1e3"}],
        "field action_values[omni_purchase].1d_view '1e3' is not a non-negative amount in plain digits",
    ),
    MetaValue(
        "actions",
        [{"value": "3"}],
        "field actions has an entry without a valid action_type (None)",
    ),
    MetaValue("actions", {"omni_purchase": "3"}, "field actions is not a list"),
]

_NOT_META = (
    "is not https://graph.facebook.com; another endpoint (such as the sandbox) is accepted only with "
    "METASPEND_ENV=development"
)
_PLAIN_HTTP = "uses plain http, which is refused outside METASPEND_ENV=development"

ENV_VALUES: list[EnvValue] = [
    EnvValue({"META_GRAPH_API_URL": "http://127.0.0.1:9"}, f"META_GRAPH_API_URL 'http://127.0.0.1:9' {_PLAIN_HTTP}"),
    EnvValue(
        {"META_GRAPH_API_URL": "http://graph.facebook.com"},
        f"META_GRAPH_API_URL 'http://graph.facebook.com' {_PLAIN_HTTP}",
    ),
    EnvValue({"META_GRAPH_API_URL": "https://127.0.0.1:9"}, f"META_GRAPH_API_URL 'https://127.0.0.1:9' {_NOT_META}"),
    EnvValue(
        {"META_GRAPH_API_URL": "https://graph.facebook.com.example.net"},
        f"META_GRAPH_API_URL 'https://graph.facebook.com.example.net' {_NOT_META}",
    ),
    EnvValue(
        {"META_GRAPH_API_URL": "https://graph.facebook.com:8443"},
        f"META_GRAPH_API_URL 'https://graph.facebook.com:8443' {_NOT_META}",
    ),
    EnvValue(
        {"META_GRAPH_API_URL": "https://graph.facebook.com/evil"},
        f"META_GRAPH_API_URL 'https://graph.facebook.com/evil' {_NOT_META}",
    ),
    EnvValue(
        {"META_GRAPH_API_URL": "https://user:hunter2@graph.facebook.com"},
        "META_GRAPH_API_URL must not carry a user name, password, query or fragment",
    ),
    EnvValue(
        {"META_GRAPH_API_URL": "https://graph.facebook.com?access_token=EAAsecret"},
        "META_GRAPH_API_URL must not carry a user name, password, query or fragment",
    ),
    EnvValue(
        {"METASPEND_ENV": "development", "META_GRAPH_API_URL": "ftp://127.0.0.1:9"},
        "META_GRAPH_API_URL must be an http(s) URL with a host, got 'ftp://127.0.0.1:9'",
    ),
    EnvValue({"META_API_VERSION": "v21.0/../../x"}, "META_API_VERSION must look like v26.0, got 'v21.0/../../x'"),
    EnvValue({"META_MAX_RETRIES": "١٢"}, "META_MAX_RETRIES must be a whole number, got '١٢'"),
    EnvValue({"META_HTTP_TIMEOUT_SECONDS": "nan"}, "META_HTTP_TIMEOUT_SECONDS must be a number, got 'nan'"),
    EnvValue(
        {"META_ATTRIBUTION_WINDOWS": "7d_click,7d_view"},
        "META_ATTRIBUTION_WINDOWS: '7d_view' is not one of Meta's attribution windows "
        "(1d_click, 7d_click, 28d_click, 1d_view, 1d_ev)",
    ),
    EnvValue({"META_BREAKDOWNS": "age,gender"}, "META_BREAKDOWNS: 'age' is not one of age_gender, country, placement"),
    EnvValue(
        {"META_BREAKDOWN_LEVELS": "account"}, "META_BREAKDOWN_LEVELS: 'account' is not one of campaign, adset, ad"
    ),
    EnvValue({"META_BREAKDOWN_LEVELS": " , "}, "META_BREAKDOWN_LEVELS must name at least one level"),
    EnvValue(
        {"META_REACH_LEVELS": "campaign,week\x1b[2J"},
        "META_REACH_LEVELS: 'week\\x1b[2j' is not one of account, campaign, adset, ad",
    ),
]


@dataclass(frozen=True)
class CliArguments:
    """Arguments of a `metaspend` command (the token, when asked, on standard input)."""

    args: tuple[str, ...]
    message: str


_MALFORMED_AD_ACCOUNT = "is malformed: expected act_<digits>, e.g. act_123456789"
SUPERSCRIPT_TWO = "\u00b2"

CLI_ARGUMENTS: list[CliArguments] = [
    CliArguments(
        ("accounts", "connect", "--org", "acme", "--ad-account", SUPERSCRIPT_TWO),
        f"ad account id {SUPERSCRIPT_TWO!r} {_MALFORMED_AD_ACCOUNT}",
    ),
    CliArguments(
        ("accounts", "connect", "--org", "acme", "--ad-account", ARABIC_ID),
        f"ad account id {ARABIC_ID!r} {_MALFORMED_AD_ACCOUNT}",
    ),
    CliArguments(
        ("accounts", "connect", "--org", "acme", "--ad-account", f"act_{ARABIC_ID}"),
        f"ad account id {'act_' + ARABIC_ID!r} {_MALFORMED_AD_ACCOUNT}",
    ),
    CliArguments(
        ("accounts", "connect", "--org", "acme", "--ad-account", "act_" + "1" * 31),
        f"ad account id {'act_' + '1' * 31!r} {_MALFORMED_AD_ACCOUNT}",
    ),
]

RUN_CONFIG_MESSAGE = 'Received unexpected config entry "{name}" at path root:resources:meta:config'
RUN_CONFIG_VALUES = ["graph_api_url", "api_version"]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render() -> str:
    lines = [
        "# Bad inputs and what they give",
        "",
        "Every bad input below was tried by the tests; this page is rendered from their cases",
        "(`metaspend_pipeline_tests/bad_inputs.py`; `python -m metaspend_pipeline_tests.bad_inputs >",
        "docs/bad-inputs.md`), and a test fails when the two differ. In every case the rows already",
        "stored (`meta_raw_insights`, `meta_spend_daily`, connected accounts) were compared before and",
        "after and were unchanged.",
        "",
        "## Values from Meta",
        "",
        "The sandbox's `corrupt_row` fault puts the value into the first row of an insights page. The",
        "fetch of that ad account fails with `MetaDataError`, the Dagster run fails naming the",
        "organization, and the ad account's rows stored before stay as they were. Amounts are",
        "never rounded: more decimals than the currency has (`metaspend_pipeline/currency.py`) is an",
        "error.",
        "",
        "| field | value | message | stored data |",
        "|---|---|---|---|",
    ]
    for case in META_VALUES:
        message = _cell(case.full_message).replace(DAY, DOC_DAY)
        lines.append(f"| `{case.field}` | `{case.value!r}` ({case.account}) | {message} | untouched |")
    lines += [
        "",
        "## Environment",
        "",
        "Where tokens and the app secret go is read from the environment only. Without",
        "`METASPEND_ENV=development` only `https://graph.facebook.com` is accepted. Every command and",
        "every run reading the setting stops before a request is sent: `metaspend` prints",
        "`metaspend: error: <message>` and exits 2; a Dagster run fails at resource set-up.",
        "",
        "| variables | message | exit code | stored data |",
        "|---|---|---|---|",
    ]
    for case in ENV_VALUES:
        given = ", ".join(f"`{k}={v}`" for k, v in case.env.items())
        lines.append(f"| {_cell(given)} | {_cell(case.message)} | 2 | untouched |")
    lines += [
        "",
        "## Command-line arguments",
        "",
        "Ids are ASCII digits only (`str.isdigit()` also accepts `²` and Arabic-Indic digits).",
        "`metaspend` prints `metaspend: error: <message>` and exits 2 before writing anything.",
        "",
        "| command | message | exit code | stored data |",
        "|---|---|---|---|",
    ]
    for case in CLI_ARGUMENTS:
        command = "metaspend " + " ".join(repr(a) if not a.isascii() or not a.isprintable() else a for a in case.args)
        lines.append(f"| `{_cell(command)}` | {_cell(case.message)} | 2 | untouched |")
    lines += [
        "",
        "## Run config",
        "",
        "The `meta` resource has no endpoint fields, so a launch that tries to choose one is refused",
        "by Dagster's config validation before the run starts (`DagsterInvalidConfigError`), for",
        "`meta_spend_job` and `meta_token_refresh_job` (which would carry the app secret) alike.",
        "",
        "| run config | message | stored data |",
        "|---|---|---|",
    ]
    for name in RUN_CONFIG_VALUES:
        lines.append(f"| `resources.meta.config.{name}` | {_cell(RUN_CONFIG_MESSAGE.format(name=name))} | untouched |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
