"""Every bad input tried against the pipeline, with the exact message a user sees.

The tests run these cases (test_bad_inputs.py, test_endpoint.py), and docs/bad-inputs.md is
rendered from them, so the table cannot drift from what the code does:

    python -m metaspend_pipeline_tests.bad_inputs > docs/bad-inputs.md
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

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
    shown: str = ""  # how the page shows a value too long to print

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
    MetaValue(
        "actions",
        [{"action_type": f"offsite_conversion.custom.{n}", "value": "1"} for n in range(1001)],
        "field actions lists 1001 entries, more than the 1000 action types accepted in a row",
        shown="1,001 entries {'action_type': 'offsite_conversion.custom.<n>', 'value': '1'}",
    ),
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


# --- the ECB's rates (`fx_rates_daily`) -------------------------------------------------------------

FEED_DAY = "2026-10-05"
FEED = "{feed}"  # where the feed's URL goes in a message, as `redaction.shown_url` shows it
_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref"><gesmes:subject>Reference rates</gesmes:subject>'
    "<Cube>{cubes}</Cube></gesmes:Envelope>"
)
_RATE_RULE = "not a positive decimal in plain digits (at most 12 before the point and 6 after)"
_CURRENCY_RULE = "not a code of three capital letters A-Z"
_TOO_LARGE = "larger than 16777216 bytes{unpacked}, the most read (the ECB's full history is about 7 MB); refused"


def ecb_feed(*days: str) -> bytes:
    """An ECB file (the ECB's own envelope) holding the given `<Cube time=...>` elements."""
    return _ENVELOPE.format(cubes="".join(days)).encode()


def ecb_day(*rates: tuple[str, str], day: str = FEED_DAY) -> str:
    cubes = "".join(f"<Cube currency={quoteattr(c)} rate={quoteattr(r)}/>" for c, r in rates)
    return f"<Cube time={quoteattr(day)}>{cubes}</Cube>"


GOOD_FEED = ecb_feed(ecb_day(("USD", "1.0838"), ("JPY", "162.41")))
_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    "<gesmes:Envelope>&lol2;</gesmes:Envelope>"
)


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def _bomb() -> bytes:
    """A gzip that unpacks to one byte more than the most read (17 KB packed)."""
    return _gzip(b" " * (16 * 1024 * 1024 + 1))


def _bad_crc() -> bytes:
    packed = bytearray(_gzip(GOOD_FEED))
    packed[-8] ^= 0xFF  # the CRC-32 of the trailer
    return bytes(packed)


@dataclass(frozen=True)
class FxFeed:
    """A feed `fx_rates_daily` might read (the test reads it from a file:// path) and its error."""

    what: str
    body: Callable[[], bytes] = field(repr=False)
    message: str


def rate_case(value: str, currency: str = "USD") -> FxFeed:
    return FxFeed(
        f"rate {value!r}",
        lambda: ecb_feed(ecb_day((currency, value))),
        f"the ECB rates at {FEED} give {currency} on {FEED_DAY} the rate {value!r}, {_RATE_RULE}",
    )


def currency_case(code: str) -> FxFeed:
    return FxFeed(
        f"currency {code!r}",
        lambda: ecb_feed(ecb_day((code, "1.0838"))),
        f"the ECB rates at {FEED} list a currency {code!r} on {FEED_DAY}, {_CURRENCY_RULE}",
    )


FX_FEEDS: list[FxFeed] = [
    rate_case("\u0661_0838"),  # Decimal() reads Arabic-Indic digits and underscores: 11.0838
    rate_case("1_0838"),
    rate_case("1e3"),
    rate_case("NaN"),
    rate_case("-1.0838"),
    rate_case("0"),
    rate_case(" 1.0838"),
    rate_case("1.0838000"),
    rate_case("1000000000000"),
    FxFeed(
        "a currency without a rate",
        lambda: ecb_feed('<Cube time="2026-10-05"><Cube currency="USD"/></Cube>'),
        f"the ECB rates at {FEED} give USD on {FEED_DAY} the rate None, {_RATE_RULE}",
    ),
    currency_case("<SCRIPT>"),  # a bare StringDataRightTruncation on PostgreSQL's CHAR(3) before
    currency_case("\u00df"),  # "ß".upper() is "SS"
    currency_case("usd"),
    currency_case("US"),
    currency_case("\uff35\uff33\uff24"),
    currency_case(""),
    FxFeed(
        "a day that is no date",
        lambda: ecb_feed(ecb_day(("USD", "1.0838"), day="2026-13-01")),
        f"the ECB rates at {FEED} have a day '2026-13-01', not a date as YYYY-MM-DD",
    ),
    FxFeed(
        "a day in Arabic-Indic digits",
        lambda: ecb_feed(ecb_day(("USD", "1.0838"), day="\u0662\u0660\u0662\u0666-10-05")),
        f"the ECB rates at {FEED} have a day '\u0662\u0660\u0662\u0666-10-05', not a date as YYYY-MM-DD",
    ),
    FxFeed(
        "the same day twice",
        lambda: ecb_feed(ecb_day(("USD", "1.0838")), ecb_day(("USD", "1.0900"))),
        f"the ECB rates at {FEED} list the day {FEED_DAY} twice",
    ),
    FxFeed(
        "a currency twice in a day",
        lambda: ecb_feed(ecb_day(("USD", "1.0838"), ("USD", "1.0900"))),
        f"the ECB rates at {FEED} give USD on {FEED_DAY} twice",
    ),
    FxFeed(
        "a DOCTYPE with entities (UTF-8)",
        lambda: _LAUGHS.encode(),
        f"the ECB rates at {FEED} declare a DOCTYPE 'lolz'; DTDs and entities are refused",
    ),
    FxFeed(
        "a DOCTYPE with entities (UTF-16)",
        lambda: _LAUGHS.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode("utf-16"),
        f"the ECB rates at {FEED} declare a DOCTYPE 'lolz'; DTDs and entities are refused",
    ),
    FxFeed(
        "an HTML page",
        lambda: b"<html><body><p>Service unavailable<br></body></html>",
        f"the ECB rates at {FEED} are not XML: mismatched tag: line 1, column 40",
    ),
    FxFeed(
        "XML without a day",
        lambda: ecb_feed(),
        f"the ECB rates at {FEED} hold no day of rates (no <Cube time=...>)",
    ),
    FxFeed(
        "a gzip of 17 KB that unpacks to 16 MiB + 1 byte",
        _bomb,
        f"the ECB rates at {FEED} are {_TOO_LARGE.format(unpacked=' once unpacked')}",
    ),
    FxFeed(
        "a plain file of 16 MiB + 1 byte",
        lambda: b" " * (16 * 1024 * 1024 + 1),
        f"the ECB rates at {FEED} are {_TOO_LARGE.format(unpacked='')}",
    ),
    FxFeed(
        "a gzip cut in half",
        lambda: _gzip(GOOD_FEED)[: len(_gzip(GOOD_FEED)) // 2],
        f"the ECB rates at {FEED} are a truncated gzip file (it ends before its last block)",
    ),
    FxFeed(
        "a gzip whose checksum is wrong",
        _bad_crc,
        f"the ECB rates at {FEED} are not valid gzip (Error -3 while decompressing data: incorrect data check)",
    ),
    FxFeed(
        "a gzip followed by other bytes",
        lambda: _gzip(GOOD_FEED) + b"<html>",
        f"the ECB rates at {FEED} have 6 bytes after their gzip data",
    ),
]


@dataclass(frozen=True)
class FxServer:
    """What an HTTP server of the feed does (`path` names it to the test's server) and the error;
    the test's METASPEND_FX_TIMEOUT_SECONDS is 2."""

    what: str
    path: str
    message: str


FX_TIMEOUT = "2"
_LATE = f"reading the ECB rates at {FEED} took longer than 2 s (METASPEND_FX_TIMEOUT_SECONDS); gave up"
FX_SERVERS: list[FxServer] = [
    FxServer("sends its body a byte every 0.05 s", "trickle-body", _LATE),
    FxServer("sends its headers a byte every 0.05 s", "trickle-headers", _LATE),
    FxServer(
        "answers 503 with Retry-After: 20",
        "retry-after-20",
        f"the ECB rates at {FEED} answered HTTP 503, and waiting 20 s to retry would pass the deadline "
        "(METASPEND_FX_TIMEOUT_SECONDS); gave up",
    ),
    FxServer(
        "answers 503 with Retry-After: 21600 (urllib3 waited that long, 4 times)",
        "retry-after-21600",
        f"the ECB rates at {FEED} answered HTTP 503, and waiting 30 s to retry would pass the deadline "
        "(METASPEND_FX_TIMEOUT_SECONDS); gave up",
    ),
    FxServer("answers 404", "not-found", f"the ECB rates at {FEED} answered HTTP 404"),
    FxServer(
        "sends Content-Encoding: br",
        "brotli",
        f"the ECB rates at {FEED} come with Content-Encoding 'br'; only gzip is read",
    ),
    FxServer(
        "sends Content-Encoding: gzip unpacking to 16 MiB + 1 byte",
        "gzip-bomb",
        f"the ECB rates at {FEED} are {_TOO_LARGE.format(unpacked=' once unpacked')}",
    ),
    FxServer(
        "redirects to itself",
        "redirect-loop",
        f"the ECB rates at {FEED} redirect more than 5 times",
    ),
]


@dataclass(frozen=True)
class FxUrl:
    """METASPEND_FX_RATES_URL, and how it is shown everywhere (log, metadata, errors), or its refusal."""

    env: dict[str, str] = field(hash=False)
    shown: str = ""
    refused: str = ""


FX_API_KEY = "k3y-" + "5ecret" * 3
FX_URLS: list[FxUrl] = [
    FxUrl(
        {"METASPEND_FX_RATES_URL": f"https://rates.example/eurofxref-hist.xml?api_key={FX_API_KEY}"},
        shown="https://rates.example/eurofxref-hist.xml?[REDACTED]",
    ),
    FxUrl(
        {"METASPEND_FX_RATES_URL": f"https://rates.example/eurofxref-hist.xml?api_key={FX_API_KEY}#frag"},
        shown="https://rates.example/eurofxref-hist.xml?[REDACTED]",
    ),
    FxUrl(
        {"METASPEND_FX_RATES_URL": f"http://rates.example/eurofxref-hist.xml?api_key={FX_API_KEY}"},
        refused="METASPEND_FX_RATES_URL 'http://rates.example/eurofxref-hist.xml?[REDACTED]' uses plain http, "
        "which is refused outside METASPEND_ENV=development",
    ),
    FxUrl(
        {"METASPEND_FX_RATES_URL": f"ftp://rates.example/eurofxref-hist.xml?api_key={FX_API_KEY}"},
        refused="METASPEND_FX_RATES_URL must be an https URL, a file:/// path or `bundled`, got "
        "'ftp://rates.example/eurofxref-hist.xml?[REDACTED]'",
    ),
    FxUrl(
        {"METASPEND_FX_RATES_URL": f"https://user:{FX_API_KEY}@rates.example/eurofxref-hist.xml"},
        refused="METASPEND_FX_RATES_URL must not carry a user name or password",
    ),
    FxUrl({"METASPEND_FX_TIMEOUT_SECONDS": "nan"}, refused="METASPEND_FX_TIMEOUT_SECONDS must be a number, got 'nan'"),
    FxUrl(
        {"METASPEND_FX_TIMEOUT_SECONDS": "0"},
        refused="METASPEND_FX_TIMEOUT_SECONDS must be at least 1.0, got 0.0",
    ),
]


# --- Meta's answer to the token exchange (`meta_token_refresh_job`) ---------------------------------

_ANSWER = "extending the token: Meta's answer has"
_EXPIRES_IN_RULE = "not a whole number of seconds from 1 to 31622400 (366 days)"
_NOT_A_TOKEN = (
    "a field access_token that is not a token (empty, longer than 4096 characters, or holding white space or "
    "control characters)"
)


@dataclass(frozen=True)
class TokenAnswer:
    """One field of Meta's `oauth/access_token` answer replaced by the sandbox's `corrupt_row` fault
    (a value of None removes it)."""

    field: str
    value: object
    message: str


def expires_in_case(value: object) -> TokenAnswer:
    return TokenAnswer("expires_in", value, f"{_ANSWER} a field expires_in {value!r}, {_EXPIRES_IN_RULE}")


TOKEN_ANSWERS: list[TokenAnswer] = [
    expires_in_case("soon"),  # int() raised out of refresh_tokens before: no organization after it was tried
    expires_in_case(-86400),  # "extended, valid until" yesterday before; the next fetch then marked NEEDS_REAUTH
    expires_in_case(0),
    expires_in_case("\u0665\u0661\u0668\u0663\u0669\u0664\u0664"),
    expires_in_case(" 5183944"),
    expires_in_case(5183944.5),
    expires_in_case(True),
    expires_in_case(10**12),
    TokenAnswer("access_token", None, f"{_ANSWER} no access_token"),
    TokenAnswer("access_token", "", f"{_ANSWER} {_NOT_A_TOKEN}"),
    TokenAnswer("access_token", "EAA new token", f"{_ANSWER} {_NOT_A_TOKEN}"),
    TokenAnswer("access_token", "EAA\x1b[2Jtoken", f"{_ANSWER} {_NOT_A_TOKEN}"),
    TokenAnswer("access_token", 1234567890, f"{_ANSWER} a field access_token that is not a string (int)"),
    TokenAnswer("access_token", ["EAAtoken"], f"{_ANSWER} a field access_token that is not a string (list)"),
]


# --- the sandbox's admin API (development only) ------------------------------------------------------

_JSON_ONLY = "an admin POST needs Content-Type: application/json"


def _foreign_host(host: str) -> str:
    return f"Host {host!r} refused: the sandbox answers requests to localhost, 127.0.0.0/8 and [::1] only"


@dataclass(frozen=True)
class AdminRequest:
    """A request another site's page could make to a sandbox on 127.0.0.1, and the sandbox's answer."""

    method: str
    path: str
    headers: dict[str, str] = field(hash=False)
    body: str | None
    status: int
    message: str


_FAULT = '[{"kind": "server_error", "times": 1000}]'
_EVIL = {"Origin": "https://evil.example"}
ADMIN_REQUESTS: list[AdminRequest] = [
    AdminRequest("POST", "/__sandbox/faults", {**_EVIL, "Content-Type": "text/plain"}, _FAULT, 415, _JSON_ONLY),
    AdminRequest(
        "POST",
        "/__sandbox/faults",
        {**_EVIL, "Content-Type": "application/x-www-form-urlencoded"},
        _FAULT,
        415,
        _JSON_ONLY,
    ),
    AdminRequest("POST", "/__sandbox/faults", _EVIL, _FAULT, 415, _JSON_ONLY),
    AdminRequest(
        "POST",
        "/__sandbox/config",
        {**_EVIL, "Content-Type": "text/plain"},
        '{"latency_seconds": 30}',
        415,
        _JSON_ONLY,
    ),
    AdminRequest(
        "POST",
        "/__sandbox/tokens",
        {**_EVIL, "Content-Type": "text/plain"},
        '{"token": "EAAplanted0000000000", "organization_id": "demo-org-1"}',
        415,
        _JSON_ONLY,
    ),
    AdminRequest(
        "POST",
        "/__sandbox/objects",
        {**_EVIL, "Content-Type": "multipart/form-data; boundary=x"},
        '{"id": "1", "name": "x"}',
        415,
        _JSON_ONLY,
    ),
    AdminRequest(
        "POST",
        "/__sandbox/faults",
        {"Content-Type": "application/json"},
        "[{kind: throttle}]",
        400,
        "Failed to decode JSON object: Expecting property name enclosed in double quotes: line 1 column 3 (char 2)",
    ),
    AdminRequest("GET", "/__sandbox/organizations", {"Host": "evil.example"}, None, 403, _foreign_host("evil.example")),
    AdminRequest(
        "GET",
        "/__sandbox/organizations",
        {"Host": "evil.example:8765"},
        None,
        403,
        _foreign_host("evil.example:8765"),
    ),
    AdminRequest(
        "GET",
        "/__sandbox/organizations",
        {"Host": "127.0.0.1.nip.io"},
        None,
        403,
        _foreign_host("127.0.0.1.nip.io"),
    ),
    AdminRequest(
        "GET",
        "/__sandbox/organizations",
        {"Host": "localhost.evil.example"},
        None,
        403,
        _foreign_host("localhost.evil.example"),
    ),
    AdminRequest(
        "POST",
        "/__sandbox/faults",
        {"Host": "evil.example", "Content-Type": "application/json"},
        _FAULT,
        403,
        _foreign_host("evil.example"),
    ),
    AdminRequest("GET", "/v21.0/me/adaccounts", {"Host": "evil.example"}, None, 403, _foreign_host("evil.example")),
]
# Requests the sandbox answers: its own callers (`SandboxAdmin`, the client, the demo) send these.
ADMIN_HOSTS_ANSWERED = ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "127.0.0.2", "[::1]:{port}", "[::1]"]


# --- names from Meta, printed by `metaspend` ----------------------------------------------------------


@dataclass(frozen=True)
class PrintedName:
    """A campaign name as Meta might send it (the sandbox renames a campaign) and as `metaspend roas
    --format table` and `--format csv` print it."""

    name: str
    shown: str


PRINTED_NAMES: list[PrintedName] = [
    PrintedName("\x1b]0;owned\x07Spring sale\x1b[31m", "\\x1b]0;owned\\x07Spring sale\\x1b[31m"),  # OSC, CSI
    PrintedName("\x1b]8;;https://evil.example\x1b\\Spring sale", "\\x1b]8;;https://evil.example\\x1b\\Spring sale"),
    PrintedName("Spring\x9b2J sale\x9d0;x\x9c", "Spring\\x9b2J sale\\x9d0;x\\x9c"),  # C1 CSI, OSC, ST
    PrintedName("Spring\rsale\nnew line\x7f\x08", "Spring\\x0dsale\\x0anew line\\x7f\\x08"),
    PrintedName("Spring \u202eelas\u202c \u2066x\u2069", "Spring \\u202eelas\\u202c \\u2066x\\u2069"),  # bidi
    PrintedName(
        "Soldes d'\u00e9t\u00e9 \u6625 \U0001f600 caf\u00e9", "Soldes d'\u00e9t\u00e9 \u6625 \U0001f600 caf\u00e9"
    ),
]


# --- the BI role (`metaspend db grant-bi`) ---------------------------------------------------------------


@dataclass(frozen=True)
class BiGrant:
    """A privilege the BI role got beside `grant-bi` (statements run as the database's owner, `{role}`
    and `{database}` filled in), what the role tries once `grant-bi` ran again, and what it gets."""

    given: tuple[str, ...]
    tried: str
    outcome: str  # "refused", or the warning `grant-bi` prints
    revoked: str = ""  # what `grant-bi` says it revoked
    after: tuple[str, ...] = ()  # run as the owner after `grant-bi`, before the role tries


_SIDE_SCHEMA = ("CREATE SCHEMA side", "CREATE TABLE side.tokens AS SELECT * FROM oauth_token")
BI_GRANTS: list[BiGrant] = [
    BiGrant((), "CREATE TEMP TABLE bi_scratch (x int)", "refused"),  # PUBLIC held TEMPORARY on the database
    BiGrant(
        (*_SIDE_SCHEMA, "GRANT USAGE ON SCHEMA side TO {role}", "GRANT SELECT ON side.tokens TO {role}"),
        "SELECT * FROM side.tokens",
        "refused",
        revoked="schema side; table side.tokens",
    ),
    BiGrant(
        (
            "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {role}",
            "CREATE TABLE oauth_token_backup AS SELECT * FROM oauth_token",
        ),
        "SELECT * FROM oauth_token_backup",
        "refused",
        revoked="default privileges of postgres on tables; table oauth_token_backup",
    ),
    BiGrant(
        ("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {role}",),
        "SELECT * FROM oauth_token_later",
        "refused",
        revoked="default privileges of postgres in schema public on tables",
        after=("CREATE TABLE oauth_token_later AS SELECT * FROM oauth_token",),
    ),
    BiGrant(
        ("GRANT SELECT (access_token_encrypted) ON oauth_token TO {role}",),
        "SELECT access_token_encrypted FROM oauth_token",
        "refused",
        revoked="table oauth_token",
    ),
    BiGrant(
        ("GRANT USAGE, UPDATE ON SEQUENCE meta_fetch_log_id_seq TO {role}",),
        "SELECT nextval('meta_fetch_log_id_seq')",
        "refused",
        revoked="sequence meta_fetch_log_id_seq",
    ),
    BiGrant(
        (
            "CREATE FUNCTION stored_tokens() RETURNS SETOF oauth_token LANGUAGE sql SECURITY DEFINER "
            "AS 'SELECT * FROM oauth_token'",
            "REVOKE EXECUTE ON FUNCTION stored_tokens() FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION stored_tokens() TO {role}",
        ),
        "SELECT * FROM stored_tokens()",
        "refused",
        revoked="routine stored_tokens()",
    ),
    BiGrant(("GRANT CREATE ON SCHEMA public TO {role}",), "CREATE TABLE bi_scratch (x int)", "refused"),
    BiGrant(("GRANT CREATE ON DATABASE {database} TO {role}",), "CREATE SCHEMA bi_scratch", "refused"),
    BiGrant(
        ("GRANT INSERT, UPDATE, DELETE, TRUNCATE ON meta_roas_by_campaign TO {role}",),
        "DELETE FROM meta_roas_by_campaign",
        "refused",
    ),
    BiGrant(
        ("GRANT SELECT ON oauth_token TO PUBLIC",),
        "SELECT count(*) FROM oauth_token",
        "warning: role {role} can still use table oauth_token, through privileges of PUBLIC that only their owner "
        "can revoke (REVOKE ... FROM PUBLIC as the owner)",
    ),
]


RUN_CONFIG_MESSAGE = 'Received unexpected config entry "{name}" at path root:resources:meta:config'
RUN_CONFIG_VALUES = ["graph_api_url", "api_version"]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prose(text: object) -> str:
    """A message as a table cell: `<` and `>` escaped, or a reader's Markdown would hide `<SCRIPT>`."""
    return _cell(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: object) -> str:
    return "`" + _cell(value).replace("`", "'") + "`"


def _render_fx() -> list[str]:
    lines = [
        "",
        "## The ECB's rates",
        "",
        "`fx_rates_daily` reads the feed (`fx.read_feed`) and checks every value (`fx.parse_feed`) before",
        "it writes anything: each problem is one `FxRatesError` naming the feed, the day and the value,",
        "the run fails, and the rates stored before stay as they were (`test_fx.py` proves it through",
        "the asset on SQLite and PostgreSQL; the cases below are run by `test_fx_feed.py`, `<feed>`",
        "standing for the feed's URL). A feed is read up to 16 MiB, packed or unpacked, in a stream",
        "that stops there (the ECB's full history is about 7 MB unpacked), and parsed by expat as it",
        "goes, so memory stays bounded whatever the feed is (`bench/hostile_inputs.py`).",
        "",
        "| feed | message | stored rates |",
        "|---|---|---|",
    ]
    for case in FX_FEEDS:
        lines.append(f"| {_prose(case.what)} | {_prose(case.message.replace(FEED, '<feed>'))} | untouched |")
    lines += [
        "",
        "Over http(s), `METASPEND_FX_TIMEOUT_SECONDS` (120) bounds connecting, up to 4 retries, their",
        "waits (a server's `Retry-After` at most 30 s) and every read together: a watchdog shuts the",
        f"socket at the deadline. With the deadline at {FX_TIMEOUT} s, a server on 127.0.0.1 doing the",
        "following is given up on within it (the test allows 1.5 s more, for a loaded machine):",
        "",
        "| the server | message |",
        "|---|---|",
    ]
    for server in FX_SERVERS:
        lines.append(f"| {_prose(server.what)} | {_prose(server.message.replace(FEED, '<feed>'))} |")
    lines += [
        "",
        "**A credential in `METASPEND_FX_RATES_URL` is redacted, not refused.** A mirror of the ECB's",
        "files may want an api key in the query string, so the URL is read as given, but wherever it",
        "is shown (the run's log line, the asset's `source` metadata, every error, settings messages",
        "and so the CLI) its query string is `[REDACTED]` and its fragment dropped",
        "(`redaction.shown_url`), and the query's values are registered as secrets, so a library's",
        "message naming the whole URL is redacted too. `test_fx.py` reads a run's whole event log and",
        "what the process printed for the key. A user name or password in the URL is refused, as",
        "before; `META_GRAPH_API_URL`, which carries tokens, refuses a query string.",
        "",
        "| variables | shown as, or refused with |",
        "|---|---|",
    ]
    for url in FX_URLS:
        given = ", ".join(f"`{k}={_cell(v)}`" for k, v in url.env.items())
        lines.append(f"| {given} | {_code(url.shown) if url.shown else _prose(url.refused)} |")
    return lines


def _render_others() -> list[str]:
    lines = [
        "",
        "## Meta's answer to the token exchange",
        "",
        "`meta_token_refresh_job` exchanges each expiring token (`fb_exchange_token`). The sandbox's",
        "`corrupt_row` fault on `oauth/access_token` puts the value into the first exchange's answer",
        "(`None` removes the field). That organization's refresh fails (`FAILED`, the job fails naming",
        "it) and keeps its token and expiry; the next organization is still extended",
        "(`test_token_refresh.py` compares the stored tokens before and after). `expires_in` is absent",
        "for a token that never expires; otherwise 1 to 31,622,400 seconds (366 days) in ASCII digits.",
        "The message never holds the token.",
        "",
        "| field | value | outcome detail | stored token |",
        "|---|---|---|---|",
    ]
    for answer in TOKEN_ANSWERS:
        lines.append(
            f"| `{answer.field}` | {_code(repr(answer.value))} | {_prose(answer.message)} | kept, with its expiry |"
        )
    lines += [
        "",
        "## The BI role",
        "",
        "`metaspend db grant-bi` makes the role's privileges its list (`CONNECT`, `USAGE` on the",
        "warehouse's schema, `SELECT` on the reporting relations) each time it runs, whatever was given",
        "to it in between; `TEMPORARY` is revoked from `PUBLIC`, with a notice",
        "([warehouse.md](warehouse.md#bi-access)). `test_bi.py` runs each grant below as the database's",
        "owner, runs the command again, then tries the statement as the role (in a read-write",
        "transaction, so that only privileges stop it).",
        "",
        "| given beside `grant-bi` | the role then tries | outcome | `grant-bi` says it revoked |",
        "|---|---|---|---|",
    ]
    for grant in BI_GRANTS:
        given = "; ".join(g.format(role="bi", database="metaspend") for g in grant.given)
        after = "; ".join(grant.after)
        tried = f"{after}; then {grant.tried}" if after else grant.tried
        outcome = "permission denied" if grant.outcome == "refused" else grant.outcome.format(role="bi")
        shown = _code(given) if given else "nothing: `PUBLIC` holds `TEMPORARY` on a new database"
        lines.append(f"| {shown} | {_code(tried)} | {_prose(outcome)} | {_prose(grant.revoked or '-')} |")
    lines += [
        "",
        "## Names printed by `metaspend`",
        "",
        "A campaign renamed in the sandbox reaches the warehouse through the objects fetch exactly as",
        "sent (`test_printed_names.py` reads it back) and `metaspend roas --format table` and `--format",
        "csv` print it through `safe_text.safe_text`: C0 and C1 control characters, DEL and Unicode's",
        "bidirectional controls are shown escaped, so no OSC or CSI sequence reaches the terminal.",
        "`--format json` carries the exact value, escaped by JSON. Error lines and run progress go",
        "through the same function.",
        "",
        "| name from Meta | printed as |",
        "|---|---|",
    ]
    for name in PRINTED_NAMES:
        lines.append(f"| {_code(repr(name.name))} | {_code(name.shown)} |")
    lines += [
        "",
        "## The sandbox's admin API (development only)",
        "",
        "What a page of another site could send to a sandbox on 127.0.0.1: nothing is changed (faults,",
        "configuration and tokens are compared before and after) and no token is answered. A request",
        "naming a Host that is not `localhost`, 127.0.0.0/8 or `[::1]` (DNS rebinding) is refused",
        "(`test_admin.py`).",
        "",
        "| request | headers | status | answer |",
        "|---|---|---|---|",
    ]
    for request in ADMIN_REQUESTS:
        headers = ", ".join(f"{k}: {v}" for k, v in request.headers.items())
        lines.append(
            f"| {_code(f'{request.method} {request.path}')} | {_code(headers)} | {request.status} | "
            f"{_prose(request.message)} |"
        )
    return lines


def render() -> str:
    lines = [
        "# Bad inputs and what they give",
        "",
        "Every bad input below was tried by the tests; this page is rendered from their cases",
        "(`metaspend_pipeline_tests/bad_inputs.py`; `python -m metaspend_pipeline_tests.bad_inputs >",
        "docs/bad-inputs.md`), and a test fails when the two differ. In the first four sections the",
        "rows already stored (`meta_raw_insights`, `meta_spend_daily`, connected accounts) were compared",
        "before and after and were unchanged; each later section says what its tests compared.",
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
        lines.append(
            f"| `{case.field}` | `{case.shown or repr(case.value)}` ({case.account}) | {message} | untouched |"
        )
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
    lines += _render_fx() + _render_others()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
