"""Meta's answers parsed and validated: insight rows with their conversions, objects of the edges, ad
accounts. The single parser of the package: everything a row holds is checked here, before any
stored row is replaced, and every error names the ad account, the date and the field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from metaspend_pipeline.currency import AMOUNT_INTEGER_DIGITS, AMOUNT_SCALE, CURRENCY_CODE, minor_units
from metaspend_pipeline.meta.errors import MetaDataError
from metaspend_pipeline.meta.models import (
    DEFAULT_WINDOW,
    ID_FIELDS,
    AdAccount,
    Conversion,
    ExchangedToken,
    InsightRow,
    MetaObject,
    ReachRow,
)
from metaspend_pipeline.settings import ATTRIBUTION_WINDOWS

_ACTION_TYPE = re.compile(r"[a-z0-9_.:-]{1,200}", re.ASCII)
# Meta has a few hundred action types; a row listing more is refused before any is parsed, so the work
# (and the conversion rows) one row can cause is bounded: at most this many per list (docs/meta-api.md).
MAX_ACTION_TYPES = 1000
# ASCII only: str.isdigit() also accepts "²" and Arabic-Indic digits, which int() and Decimal() read
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
ID_PATTERN = re.compile(r"[0-9]{1,30}", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_AMOUNT = re.compile(r"(?P<integer>[0-9]+)(?:\.(?P<decimals>[0-9]+))?", re.ASCII)
_MAX_COUNT = 2**63 - 1
_BREAKDOWN_MAX = 64
_BREAKDOWN_VALUE = re.compile(rf"[A-Za-z0-9_+. -]{{1,{_BREAKDOWN_MAX}}}", re.ASCII)
FREQUENCY_SCALE = 6  # decimals of frequency the warehouse keeps (NUMERIC(18, 6)); Meta writes six
# Meta's long-lived tokens last about 60 days; an answer beyond a year (or not in the future) is no expiry to store.
MAX_TOKEN_LIFETIME_SECONDS = 366 * 86400
_EXPIRES_IN = re.compile(r"[0-9]{1,10}", re.ASCII)
MAX_TOKEN_LENGTH = 4096


def utc_from_epoch(value: Any) -> dt.datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds > 0 else None


def parse_exchanged_token(body: Any, now: dt.datetime) -> ExchangedToken:
    """Meta's answer to `fb_exchange_token`, checked as insight values are: `access_token` a non-empty
    string without white space or control characters, `expires_in` (absent: no expiry) positive ASCII
    digits of at most MAX_TOKEN_LIFETIME_SECONDS. The errors name the field, never the token."""
    where = "extending the token: Meta's answer"
    if not isinstance(body, dict):
        raise MetaDataError(f"{where} is not a JSON object")
    token = body.get("access_token")
    if token is None:
        raise MetaDataError(f"{where} has no access_token")
    if not isinstance(token, str):
        raise MetaDataError(f"{where} has a field access_token that is not a string ({type(token).__name__})")
    if not token or len(token) > MAX_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        raise MetaDataError(
            f"{where} has a field access_token that is not a token (empty, longer than {MAX_TOKEN_LENGTH} "
            "characters, or holding white space or control characters)"
        )
    expires_in = body.get("expires_in")
    expires_at = None
    if expires_in is not None:
        text = str(expires_in) if isinstance(expires_in, str | int) and not isinstance(expires_in, bool) else ""
        seconds = int(text) if _EXPIRES_IN.fullmatch(text) else 0
        if not 0 < seconds <= MAX_TOKEN_LIFETIME_SECONDS:
            raise MetaDataError(
                f"{where} has a field expires_in {expires_in!r}, not a whole number of seconds from 1 to "
                f"{MAX_TOKEN_LIFETIME_SECONDS} (366 days)"
            )
        expires_at = now + dt.timedelta(seconds=seconds)
    token_type = body.get("token_type")
    return ExchangedToken(token, token_type if isinstance(token_type, str) else None, expires_at)


def parse_ad_account(body: Mapping[str, Any], account: str) -> AdAccount:
    """An ad account node as Meta answers it (`_AD_ACCOUNT_FIELDS`), checked: it must have a currency and a
    time zone."""
    currency, zone = body.get("currency"), body.get("timezone_name")
    if not currency or not zone:
        raise MetaDataError(f"ad account {account}: Meta returned no currency or time zone", ad_account_id=account)
    if not isinstance(currency, str) or not CURRENCY_CODE.fullmatch(currency):
        raise MetaDataError(
            f"ad account {account}: field currency {currency!r} is not a currency code (3 letters A-Z)",
            ad_account_id=account,
        )
    offset = body.get("timezone_offset_hours_utc")
    return AdAccount(
        id=account,
        name=body.get("name"),
        currency=currency,
        timezone_name=str(zone),
        timezone_offset_hours_utc=Decimal(str(offset)) if offset is not None else None,
        account_status=int(body["account_status"]) if body.get("account_status") is not None else None,
    )


def parse_insight_row(
    raw: Any,
    account: str,
    level: str,
    since: dt.date,
    until: dt.date,
    *,
    conversions: bool = True,
    breakdown: tuple[str, ...] = (),
) -> InsightRow:
    """One of Meta's insight rows, parsed and validated: the single parser of the package.

    Everything a row holds is checked here, before any stored row is replaced: ASCII digits only,
    ids and counts that fit their columns, money within NUMERIC(18, 2) with no more decimals than
    the currency has, and never rounded. Each error names the ad account, the date and the field.
    `conversions=False` skips the conversion lists, for a row read back after it was validated;
    `breakdown` names the row's breakdown fields (`BREAKDOWN_SETS`), each checked and kept in order.
    """
    if not isinstance(raw, dict):
        raise MetaDataError(f"ad account {account}, {level} insights: a row is not an object", ad_account_id=account)
    day_text = raw.get("date_start")
    shown_day = day_text if isinstance(day_text, str) and _DATE.fullmatch(day_text) else "(no date)"
    where = f"ad account {account}, {level} row of {shown_day}"
    if not isinstance(day_text, str) or not _DATE.fullmatch(day_text):
        raise MetaDataError(f"{where}: field date_start {day_text!r} is not a date", ad_account_id=account)
    try:
        day = dt.date.fromisoformat(day_text)
    except ValueError:
        raise MetaDataError(f"{where}: field date_start {day_text!r} is not a date", ad_account_id=account) from None
    if not since <= day <= until:
        raise MetaDataError(
            f"{where}: date {day} is outside the requested range {since}..{until}", ad_account_id=account
        )
    if raw.get("date_stop") not in (None, day_text):
        raise MetaDataError(
            f"{where}: date_stop {raw.get('date_stop')!r} differs from date_start; expected daily rows",
            ad_account_id=account,
        )
    row_account = raw.get("account_id")
    if row_account is not None and f"act_{row_account}" != account:
        raise MetaDataError(f"{where}: field account_id {row_account!r} is not {account}", ad_account_id=account)
    ids: dict[str, str | None] = {"campaign_id": None, "adset_id": None, "ad_id": None}
    for name in ID_FIELDS[level]:
        value = raw.get(name)
        if not isinstance(value, str | int) or isinstance(value, bool) or not ID_PATTERN.fullmatch(str(value)):
            raise MetaDataError(f"{where}: field {name} is missing or not an id ({value!r})", ad_account_id=account)
        ids[name] = str(value)
    currency = raw.get("account_currency")
    if not isinstance(currency, str) or not CURRENCY_CODE.fullmatch(currency):
        raise MetaDataError(
            f"{where}: field account_currency {currency!r} is not a currency code (3 letters A-Z)",
            ad_account_id=account,
        )
    spend = _decimal(raw.get("spend"), where, "spend", account, currency)
    if spend is None:
        raise MetaDataError(f"{where}: field spend is missing", ad_account_id=account)
    values = tuple(_breakdown_value(raw.get(name), where, name, account) for name in breakdown)
    return InsightRow(
        ad_account_id=account,
        level=level,
        date=day,
        currency=currency,
        spend=spend,
        impressions=_count(raw.get("impressions"), where, "impressions", account),
        clicks=_count(raw.get("clicks"), where, "clicks", account),
        raw=raw,
        conversions=parse_conversions(raw, where, account, currency) if conversions else (),
        breakdown=values,
        **ids,
    )


def _breakdown_value(value: Any, where: str, name: str, account: str) -> str:
    """A breakdown value as Meta writes them (`25-34`, `female`, `US`, `instagram_reels`, `65+`):
    short printable ASCII, since it becomes part of a row's key."""
    if not isinstance(value, str) or not _BREAKDOWN_VALUE.fullmatch(value):
        raise MetaDataError(
            f"{where}: field {name} {value!r} is missing or not a breakdown value (1 to {_BREAKDOWN_MAX} "
            "characters of A-Z, a-z, 0-9, space, _ + - .)",
            ad_account_id=account,
        )
    return value


def parse_reach_row(raw: Any, account: str, level: str, since: dt.date, until: dt.date) -> ReachRow:
    """One object's row of a whole period (`time_increment=all_days`), parsed and validated as
    `parse_insight_row` checks daily rows: the period must be exactly the one asked for, reach a
    whole number no larger than impressions, frequency a non-negative decimal."""
    period = f"{since}..{until}"
    where = f"ad account {account}, {level} reach of {period}"
    if not isinstance(raw, dict):
        raise MetaDataError(f"{where}: a row is not an object", ad_account_id=account)
    for name, expected in (("date_start", since), ("date_stop", until)):
        if raw.get(name) != expected.isoformat():
            raise MetaDataError(
                f"{where}: field {name} {raw.get(name)!r} is not {expected}: expected one row for the whole period",
                ad_account_id=account,
            )
    row_account = raw.get("account_id")
    if row_account is not None and f"act_{row_account}" != account:
        raise MetaDataError(f"{where}: field account_id {row_account!r} is not {account}", ad_account_id=account)
    ids: dict[str, str | None] = {"campaign_id": None, "adset_id": None, "ad_id": None}
    for name in ID_FIELDS[level]:
        value = raw.get(name)
        if not isinstance(value, str | int) or isinstance(value, bool) or not ID_PATTERN.fullmatch(str(value)):
            raise MetaDataError(f"{where}: field {name} is missing or not an id ({value!r})", ad_account_id=account)
        ids[name] = str(value)
    where = f"{where}, {level} {ids[ID_FIELDS[level][-1]] if ID_FIELDS[level] else account}"
    currency = raw.get("account_currency")
    if not isinstance(currency, str) or not CURRENCY_CODE.fullmatch(currency):
        raise MetaDataError(
            f"{where}: field account_currency {currency!r} is not a currency code (3 letters A-Z)",
            ad_account_id=account,
        )
    numbers: dict[str, int] = {}
    for name in ("reach", "impressions"):
        number = _count(raw.get(name), where, name, account)
        if number is None:
            raise MetaDataError(
                f"{where}: field {name} is missing (Meta leaves reach out of periods older than 13 months)"
                if name == "reach"
                else f"{where}: field {name} is missing",
                ad_account_id=account,
            )
        numbers[name] = number
    if numbers["reach"] > numbers["impressions"]:
        raise MetaDataError(
            f"{where}: reach {numbers['reach']} is larger than impressions {numbers['impressions']}",
            ad_account_id=account,
        )
    frequency = _ratio(raw.get("frequency"), where, "frequency", account)
    spend = _decimal(raw.get("spend"), where, "spend", account, currency)
    return ReachRow(
        ad_account_id=account,
        level=level,
        period_start=since,
        period_end=until,
        currency=currency,
        reach=numbers["reach"],
        frequency=frequency,
        impressions=numbers["impressions"],
        spend=spend if spend is not None else Decimal(0),
        raw=raw,
        **ids,
    )


def _ratio(value: Any, where: str, name: str, account: str) -> Decimal:
    """A non-negative decimal such as Meta's frequency ("1.052632"), rounded half up to FREQUENCY_SCALE
    decimals (the column's): a ratio, not money; Meta writes six."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    match = _AMOUNT.fullmatch(text)
    if match is None or len(match.group("integer").lstrip("0")) > 12 or len(match.group("decimals") or "") > 30:
        raise MetaDataError(
            f"{where}: field {name} {value!r} is missing or not a non-negative decimal", ad_account_id=account
        )
    return Decimal(text).quantize(Decimal(1).scaleb(-FREQUENCY_SCALE), rounding=ROUND_HALF_UP)


def parse_conversions(raw: Mapping[str, Any], where: str, account: str, currency: str) -> tuple[Conversion, ...]:
    """The row's `actions` and `action_values`, one Conversion per (action type, window) present.

    Counts are whole numbers and values amounts in the ad account's currency, checked as spend is;
    `purchase_roas` is checked to be non-negative numbers (it is kept in the raw row only). Window
    keys other than Meta's current windows are left in the raw row.
    """
    counts = _action_list(raw, "actions", where, account)
    values = _action_list(raw, "action_values", where, account)
    ratios = _action_list(raw, "purchase_roas", where, account)
    parsed_counts: dict[tuple[str, str], int | None] = {}
    parsed_values: dict[tuple[str, str], Decimal | None] = {}
    for action_type, entry in counts.items():
        for key, window in _window_keys(entry):
            name = f"actions[{action_type}].{key}"
            parsed_counts[(action_type, window)] = _count(entry[key], where, name, account)
    for action_type, entry in values.items():
        for key, window in _window_keys(entry):
            name = f"action_values[{action_type}].{key}"
            parsed_values[(action_type, window)] = _decimal(entry[key], where, name, account, currency)
    for action_type, entry in ratios.items():
        for key, _ in _window_keys(entry):
            text = entry[key]
            if not isinstance(text, str | int) or isinstance(text, bool) or not _AMOUNT.fullmatch(str(text)):
                raise MetaDataError(
                    f"{where}: field purchase_roas[{action_type}].{key} {text!r} is not a non-negative number",
                    ad_account_id=account,
                )
    keys = dict.fromkeys([*parsed_counts, *parsed_values])
    return tuple(
        Conversion(
            action_type, window, parsed_counts.get((action_type, window)), parsed_values.get((action_type, window))
        )
        for action_type, window in keys
    )


def _action_list(raw: Mapping[str, Any], name: str, where: str, account: str) -> dict[str, Mapping[str, Any]]:
    """A list of `{"action_type": ..., "value": ..., "<window>": ...}` by action type (absent: empty)."""
    items = raw.get(name)
    if items is None:
        return {}
    if not isinstance(items, list):
        raise MetaDataError(f"{where}: field {name} is not a list", ad_account_id=account)
    if len(items) > MAX_ACTION_TYPES:
        raise MetaDataError(
            f"{where}: field {name} lists {len(items)} entries, more than the {MAX_ACTION_TYPES} action types "
            "accepted in a row",
            ad_account_id=account,
        )
    out: dict[str, Mapping[str, Any]] = {}
    for item in items:
        action_type = item.get("action_type") if isinstance(item, dict) else None
        if not isinstance(action_type, str) or not _ACTION_TYPE.fullmatch(action_type):
            raise MetaDataError(
                f"{where}: field {name} has an entry without a valid action_type ({action_type!r})",
                ad_account_id=account,
            )
        if action_type in out:
            raise MetaDataError(f"{where}: field {name} lists action type {action_type} twice", ad_account_id=account)
        out[action_type] = item
    return out


def _window_keys(entry: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key in the entry, window stored): `value` is the account's own setting, then Meta's windows."""
    if "value" in entry:
        yield "value", DEFAULT_WINDOW
    for window in ATTRIBUTION_WINDOWS:
        if window in entry:
            yield window, window


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def _storable(text: str) -> str:
    """Display text as a database can hold it: NUL (which PostgreSQL's text refuses) and unpaired
    surrogates (which no encoding writes) become U+FFFD, as a decoder shows a character it cannot."""
    if text.isprintable():
        return text
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def parse_object(raw: Any, account: str, kind: str) -> MetaObject:
    """One campaign, ad set or ad from an object edge, parsed and validated."""
    if not isinstance(raw, dict):
        raise MetaDataError(f"ad account {account}, {kind}s: an item is not an object", ad_account_id=account)
    where = f"ad account {account}, {kind} {raw.get('id')!r}"

    def fail(name: str, problem: str) -> MetaDataError:
        return MetaDataError(f"{where}: field {name} {raw.get(name)!r} {problem}", ad_account_id=account)

    parents = {"campaign": (), "adset": ("campaign_id",), "ad": ("campaign_id", "adset_id")}[kind]
    for name in ("id", *parents):
        if not _is_id(raw.get(name)):
            raise fail(name, "is missing or not an id")
    name = raw.get("name")
    if not isinstance(name, str):
        raise fail("name", "is missing or not text")
    for status_field in ("status", "effective_status"):
        value = raw.get(status_field)
        if not isinstance(value, str) or not value or not value.replace("_", "").isalpha() or not value.isupper():
            raise fail(status_field, "is not a status such as ACTIVE")
    objective = raw.get("objective") if kind == "campaign" else None
    if objective is not None and not isinstance(objective, str):
        raise fail("objective", "is not text")
    times: dict[str, dt.datetime | None] = {}
    for time_field in ("created_time", "updated_time"):
        text = raw.get(time_field)
        if text is None:
            times[time_field] = None
            continue
        try:
            moment = dt.datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            raise fail(time_field, "is not a time such as 2026-01-15T10:00:00-0800") from None
        times[time_field] = moment
    return MetaObject(
        ad_account_id=account,
        kind=kind,
        id=raw["id"],
        name=_storable(name),
        status=raw["status"],
        effective_status=raw["effective_status"],
        objective=None if objective is None else _storable(objective),
        campaign_id=raw.get("campaign_id") if parents else None,
        adset_id=raw.get("adset_id") if kind == "ad" else None,
        created_time=times["created_time"],
        updated_time=times["updated_time"],
    )


def _decimal(value: Any, where: str, name: str, account: str, currency: str) -> Decimal | None:
    """An amount exactly as Meta wrote it: plain ASCII digits with at most the currency's decimals."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MetaDataError(f"{where}: field {name} {value!r} is not a decimal string", ad_account_id=account)
    text = str(value)
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise MetaDataError(
            f"{where}: field {name} {value!r} is not a non-negative amount in plain digits", ad_account_id=account
        )
    integer, decimals = match.group("integer"), match.group("decimals") or ""
    if len(integer.lstrip("0")) > AMOUNT_INTEGER_DIGITS:
        raise MetaDataError(
            f"{where}: field {name} {value!r} is out of range (at most {AMOUNT_INTEGER_DIGITS} digits "
            "before the decimal point)",
            ad_account_id=account,
        )
    allowed = minor_units(currency)
    places = f"{len(decimals)} decimal{'' if len(decimals) == 1 else 's'}"
    if len(decimals) > allowed:
        raise MetaDataError(
            f"{where}: field {name} {value!r} has {places}; {currency} has {allowed}, and amounts are never rounded",
            ad_account_id=account,
        )
    if len(decimals.rstrip("0")) > AMOUNT_SCALE:
        raise MetaDataError(
            f"{where}: field {name} {value!r} has {places}; the warehouse stores {AMOUNT_SCALE}, and amounts are "
            "never rounded",
            ad_account_id=account,
        )
    return Decimal(text)


def _count(value: Any, where: str, name: str, account: str) -> int | None:
    if value is None:
        return None
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not _DIGITS.fullmatch(text):
        raise MetaDataError(f"{where}: field {name} {value!r} is not a whole number", ad_account_id=account)
    # the length first: int() refuses strings of more than 4300 digits with a bare ValueError
    if len(text.lstrip("0")) > len(str(_MAX_COUNT)) or int(text) > _MAX_COUNT:
        raise MetaDataError(
            f"{where}: field {name} {value!r} is out of range (above 2^63 - 1, the largest BIGINT)",
            ad_account_id=account,
        )
    return int(text)
