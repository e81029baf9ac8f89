"""A client for the parts of Meta's Graph API the pipeline uses. Plain Python, no Dagster.

- Insights of an ad account at a level over a date range, one row per day, archived and deleted
  objects included, streamed page by page and validated row by row.
- One retry policy for everything: throttles wait as long as Meta says, transient failures back
  off with jitter, "reduce the amount of data" halves the page, token errors never retry.
- The token travels in the Authorization header; `paging.next` URLs are stripped of the
  `access_token` Meta puts in them; every message is redacted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from metaspend_pipeline.currency import AMOUNT_INTEGER_DIGITS, AMOUNT_SCALE, CURRENCY_CODE, minor_units
from metaspend_pipeline.meta.errors import (
    OLD_DATA_CODE,
    GraphError,
    MetaApiError,
    MetaDataError,
    MetaPermissionError,
    MetaReportJobError,
    MetaRetriesExhaustedError,
    MetaTokenError,
)
from metaspend_pipeline.meta.throttle import AppPacer, Pacer, parse_usage, retry_after_seconds
from metaspend_pipeline.redaction import get_logger, protect_third_party_loggers, redact, register_secret
from metaspend_pipeline.settings import ATTRIBUTION_WINDOWS, MetaApiSettings

LEVELS = ("account", "campaign", "adset", "ad")
ID_FIELDS: Mapping[str, tuple[str, ...]] = {
    "account": (),
    "campaign": ("campaign_id",),
    "adset": ("campaign_id", "adset_id"),
    "ad": ("campaign_id", "adset_id", "ad_id"),
}
# Every effective status, so archived and deleted objects are included and totals match Ads Manager.
EFFECTIVE_STATUSES = (
    "ACTIVE",
    "PAUSED",
    "DELETED",
    "ARCHIVED",
    "PENDING_REVIEW",
    "DISAPPROVED",
    "PREAPPROVED",
    "PENDING_BILLING_INFO",
    "CAMPAIGN_PAUSED",
    "ADSET_PAUSED",
    "IN_PROCESS",
    "WITH_ISSUES",
)
_STATUS_FIELD = {"account": "ad", "campaign": "campaign", "adset": "adset", "ad": "ad"}
_OBJECT_COMMON = ("id", "name", "status", "effective_status", "created_time", "updated_time")
OBJECT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "campaign": (*_OBJECT_COMMON, "objective"),
    "adset": (*_OBJECT_COMMON, "campaign_id"),
    "ad": (*_OBJECT_COMMON, "campaign_id", "adset_id"),
}
_METRICS = ("spend", "impressions", "clicks")
# Meta's conversions, in the same requests as spend: counts, values (ad account's currency), ratio
CONVERSION_FIELDS = ("actions", "action_values", "purchase_roas")
# The window of Meta's `value` key: the ad account's own attribution setting, as Ads Manager shows it
DEFAULT_WINDOW = "default"
_ACTION_TYPE = re.compile(r"[a-z0-9_.:-]{1,200}", re.ASCII)
_JOB_DONE = "Job Completed"
_JOB_FAILED = frozenset({"Job Failed", "Job Skipped"})
_STRIPPED_PARAMS = frozenset({"access_token", "appsecret_proof"})
# ASCII only: str.isdigit() also accepts "²" and Arabic-Indic digits, which int() and Decimal() read
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_ID = re.compile(r"[0-9]{1,30}", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_AMOUNT = re.compile(r"(?P<integer>[0-9]+)(?:\.(?P<decimals>[0-9]+))?", re.ASCII)
_MAX_COUNT = 2**63 - 1
_AD_ACCOUNT_FIELDS = "id,account_id,name,currency,timezone_name,timezone_offset_hours_utc,account_status"
# Failures of the connection itself, before or during an answer: worth another attempt.
_TRANSIENT_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

log = get_logger(__name__)
protect_third_party_loggers()


@dataclass(frozen=True, slots=True)
class InsightRow:
    """One day of one object, parsed and validated; `raw` is the row exactly as Meta sent it."""

    ad_account_id: str
    level: str
    date: dt.date
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    currency: str
    spend: Decimal
    impressions: int | None
    clicks: int | None
    raw: Mapping[str, Any] = field(repr=False)
    conversions: tuple[Conversion, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Conversion:
    """One action type under one attribution window of one insight row: its count (`actions`)
    and its value (`action_values`), either None when Meta sent only the other."""

    action_type: str
    attribution_window: str  # DEFAULT_WINDOW for Meta's `value`, else one of ATTRIBUTION_WINDOWS
    count: int | None
    value: Decimal | None


@dataclass(frozen=True, slots=True)
class MetaObject:
    """A campaign, ad set or ad as Meta describes it now; parents are None where they do not apply."""

    ad_account_id: str
    kind: str  # campaign, adset or ad
    id: str
    name: str
    status: str
    effective_status: str
    objective: str | None
    campaign_id: str | None
    adset_id: str | None
    created_time: dt.datetime | None
    updated_time: dt.datetime | None


@dataclass(frozen=True)
class AdAccount:
    id: str
    name: str | None
    currency: str
    timezone_name: str
    timezone_offset_hours_utc: Decimal | None
    account_status: int | None


@dataclass(frozen=True)
class TokenInfo:
    is_valid: bool
    expires_at: dt.datetime | None
    data_access_expires_at: dt.datetime | None
    scopes: tuple[str, ...]
    app_id: str | None
    type: str | None
    user_id: str | None


@dataclass(frozen=True)
class ExchangedToken:
    access_token: str = field(repr=False)
    token_type: str | None = None
    expires_at: dt.datetime | None = None


@dataclass
class ClientStats:
    """What one client did, for logs and Dagster metadata."""

    requests: int = 0
    pages: int = 0
    rows: int = 0
    retries: int = 0
    throttle_events: int = 0
    throttle_wait_seconds: float = 0.0
    pacing_wait_seconds: float = 0.0
    app_pacing_wait_seconds: float = 0.0
    response_seconds: float = 0.0  # waiting for Meta's answers, report runs' polls included
    async_jobs: int = 0

    @property
    def meta_wait_seconds(self) -> float:
        """Time spent waiting on Meta: its answers, its report runs, and the pauses its limits impose."""
        return (
            self.response_seconds + self.throttle_wait_seconds + self.pacing_wait_seconds + self.app_pacing_wait_seconds
        )

    def add(self, other: ClientStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _ReduceData(Exception):
    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed by the app secret, as Meta's "Require App Secret" wants."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def _utc_from_epoch(value: Any) -> dt.datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds > 0 else None


def _ad_account_of(body: Mapping[str, Any], account: str) -> AdAccount:
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


def _account_path(ad_account_id: str) -> str:
    return ad_account_id if ad_account_id.startswith("act_") else f"act_{ad_account_id}"


class MetaClient:
    """One token's view of the Graph API. Not thread-safe: use one client per thread.

    Clients that share an app share its usage: give them one `AppPacer` (the default is one of
    their own).
    """

    def __init__(
        self,
        access_token: str,
        settings: MetaApiSettings | None = None,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        app_pacer: AppPacer | None = None,
    ) -> None:
        access_token = (access_token or "").strip()
        if not access_token:
            raise MetaApiError("MetaClient needs an access token")
        if any(ch.isspace() or not ch.isprintable() for ch in access_token):
            raise MetaApiError("the access token contains white space or control characters; store it again")
        self._token = access_token
        self.settings = settings or MetaApiSettings.from_env()
        self._session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._log = logger or log
        self._rng = rng or random.Random()
        self._pacer = Pacer(self.settings.usage_slowdown_pct, self.settings.usage_window_seconds, clock)
        self._app_pacer = app_pacer or AppPacer(self.settings.usage_slowdown_pct, self.settings.usage_window_seconds)
        self._accounts: dict[str, AdAccount] = {}
        self.stats = ClientStats()
        register_secret(access_token)
        if self.settings.app_secret:
            register_secret(self.settings.app_secret)
            register_secret(appsecret_proof(access_token, self.settings.app_secret))

    def __repr__(self) -> str:
        return f"MetaClient({self.settings.base_url})"

    # --- transport ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.settings.base_url}/{path.lstrip('/')}"

    def _auth(self, token: str) -> tuple[dict[str, str], dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"}
        params: dict[str, str] = {}
        if self.settings.app_secret:
            proof = appsecret_proof(token, self.settings.app_secret)
            register_secret(proof)
            params["appsecret_proof"] = proof
        return headers, params

    def _backoff(self, attempt: int) -> float:
        base = self.settings.retry_base_delay * (2**attempt)
        return min(self.settings.retry_max_wait, base) * self._rng.uniform(0.5, 1.0)

    def _pause(self, seconds: float, reason: str, context: str) -> None:
        if seconds <= 0:  # a negative wait hint (a hostile or broken usage header) is no wait
            return
        self._log.info("%s: pausing %.1fs (%s)", context, seconds, reason)
        self._sleep(seconds)

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        context: str,
        token: str | None = None,
        authenticated: bool = True,
        reducible: bool = False,
    ) -> dict[str, Any]:
        """One Graph API call with the retry policy; returns the decoded JSON object.

        `reducible` callers (pages, report runs) handle "reduce the amount of data" themselves;
        for others it is one more transient failure.
        """
        url = self._url(path)
        query = dict(params or {})
        headers: dict[str, str] = {}
        if authenticated:
            headers, proof = self._auth(token or self._token)
            query.update(proof)
        waited = 0.0
        attempt = 0
        while True:
            paced = self._pacer.take_delay()
            if paced:
                paced = min(paced, self.settings.retry_max_wait)
                last = self._pacer.last
                figure = f"{last.figure} at {last.pct:.0f}%" if last else "usage"
                self._pause(paced, f"{figure}, slowing down before Meta blocks", context)
                self.stats.pacing_wait_seconds += paced
            shared = min(self._app_pacer.reserve(), self.settings.retry_max_wait)
            if shared > 0:
                last = self._app_pacer.last
                figure = f"{last.figure} at {last.pct:.0f}%" if last else "app usage"
                self._pause(shared, f"{figure}, the app's usage shared by every ad account", context)
                self.stats.app_pacing_wait_seconds += shared
            failure: str
            delay: float
            self._pacer.record_call()
            sent = self._clock()
            try:
                response = self._session.request(
                    method, url, params=query, headers=headers, timeout=self.settings.timeout_seconds
                )
            except _TRANSIENT_TRANSPORT_ERRORS as exc:
                self.stats.response_seconds += self._clock() - sent
                self.stats.requests += 1
                failure = f"{type(exc).__name__}: {redact(exc)}"
                delay = self._backoff(attempt)
            except requests.RequestException as exc:
                raise MetaApiError(
                    f"{context}: the request could not be sent ({type(exc).__name__}: {redact(exc)})"
                ) from None
            else:
                self.stats.requests += 1
                usage = parse_usage(response.headers)
                self._pacer.observe(usage)
                self._app_pacer.observe(parse_usage(response.headers, "app"))
                body = _json_or_none(response)
                self.stats.response_seconds += self._clock() - sent
                if response.status_code == 200 and isinstance(body, dict) and "error" not in body:
                    return body
                if response.status_code == 200:
                    failure = "HTTP 200 with a body that is not a JSON object"
                    delay = self._backoff(attempt)
                else:
                    error = GraphError.from_body(response.status_code, body)
                    failure = error.describe()
                    if error.is_token_error:
                        raise MetaTokenError(
                            f"{context}: Meta rejected the access token ({failure}); the account needs "
                            "re-authorisation",
                            error=error,
                        )
                    if error.asks_for_less_data and reducible:
                        raise _ReduceData(error)
                    if error.is_throttle:
                        self.stats.throttle_events += 1
                        self._pacer.take_delay()  # the throttle wait below covers it
                        told = [
                            s
                            for s in (
                                retry_after_seconds(response.headers),
                                usage.regain_seconds if usage else None,
                                usage.reset_seconds if usage and usage.pct >= 100 else None,
                            )
                            if s
                        ]
                        delay = max(told) * self._rng.uniform(1.0, 1.1) if told else self._backoff(attempt)
                        delay = min(delay, self.settings.retry_max_wait)
                        self.stats.throttle_wait_seconds += delay
                    elif error.is_transient_failure:
                        delay = self._backoff(attempt)
                    else:
                        raise _permanent(error, context)
            attempt += 1
            if attempt > self.settings.max_retries:
                raise MetaRetriesExhaustedError(
                    f"{context}: gave up after {attempt} attempts (META_MAX_RETRIES="
                    f"{self.settings.max_retries}); last failure: {failure}"
                )
            if waited + delay > self.settings.retry_budget_seconds:
                raise MetaRetriesExhaustedError(
                    f"{context}: waiting {delay:.0f}s more would pass the retry budget of "
                    f"{self.settings.retry_budget_seconds:.0f}s (META_RETRY_BUDGET_SECONDS); "
                    f"last failure: {failure}"
                )
            self.stats.retries += 1
            self._log.warning("%s: attempt %d failed (%s); retrying in %.1fs", context, attempt, failure, delay)
            self._sleep(delay)
            waited += delay

    def _pages(self, path: str, params: Mapping[str, Any], *, context: str) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list endpoint, following `paging.next` until the last page."""
        limit = int(params.get("limit") or self.settings.page_size)
        url, query = self._url(path), {**params, "limit": limit}
        while True:
            try:
                body = self.request("GET", url, query, context=context, reducible=True)
            except _ReduceData as signal:
                if limit <= 1:
                    raise MetaApiError(
                        f"{context}: Meta asks for less data even one row at a time ({signal.error.describe()})",
                        error=signal.error,
                    ) from None
                limit = max(1, limit // 2)
                query["limit"] = limit
                self._log.warning("%s: Meta asked for less data; page size halved to %d", context, limit)
                continue
            data = body.get("data")
            if not isinstance(data, list):
                raise MetaApiError(f"{context}: response has no `data` list (keys: {sorted(body)})")
            self.stats.pages += 1
            yield data
            next_url = (body.get("paging") or {}).get("next")
            if not next_url:
                return
            url, query = self._follow(next_url, limit, context)

    def _follow(self, next_url: str, limit: int, context: str) -> tuple[str, dict[str, Any]]:
        """`paging.next` without the token Meta embeds in it, on the host we trust, at our page size."""
        parts = urllib.parse.urlsplit(next_url)
        ours = urllib.parse.urlsplit(self.settings.base_url)
        if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
            raise MetaApiError(
                f"{context}: paging.next points at {parts.scheme}://{parts.netloc}, not the Graph API "
                f"at {ours.scheme}://{ours.netloc}; refusing to send the token there"
            )
        query = {
            k: v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in _STRIPPED_PARAMS
        }
        query["limit"] = str(limit)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), query

    # --- insights ----------------------------------------------------------------------------

    def insights(
        self,
        ad_account_id: str,
        level: str,
        since: dt.date,
        until: dt.date,
        *,
        use_async: bool | None = None,
    ) -> Iterator[InsightRow]:
        """Daily rows of `level` for the ad account over [since, until], streamed page by page.

        Large requests (ad set and ad level over `async_min_days` days or more) run as async
        report jobs, as Meta recommends; `use_async` forces the choice.
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if since > until:
            raise ValueError(f"since {since} is after until {until}")
        account = _account_path(ad_account_id)
        days = (until - since).days + 1
        if use_async is None:
            use_async = level in ("adset", "ad") and days >= self.settings.async_min_days
        if use_async:
            yield from self._insights_async(account, level, since, until, retried=False)
        else:
            yield from self._insights_sync(account, level, since, until)

    def _insight_params(self, level: str, since: dt.date, until: dt.date) -> dict[str, Any]:
        fields = [
            "date_start",
            "date_stop",
            "account_id",
            "account_currency",
            *_METRICS,
            *CONVERSION_FIELDS,
            *ID_FIELDS[level],
        ]
        return {
            "level": level,
            "fields": ",".join(fields),
            "action_attribution_windows": json.dumps(list(self.settings.attribution_windows)),
            "use_unified_attribution_setting": "true",
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
            "time_increment": "1",
            "filtering": json.dumps(
                [
                    {
                        "field": f"{_STATUS_FIELD[level]}.effective_status",
                        "operator": "IN",
                        "value": list(EFFECTIVE_STATUSES),
                    }
                ]
            ),
        }

    def _context(self, account: str, level: str, since: dt.date, until: dt.date) -> str:
        span = since.isoformat() if since == until else f"{since}..{until}"
        return f"ad account {account}, {level} insights {span}"

    def _insights_sync(self, account: str, level: str, since: dt.date, until: dt.date) -> Iterator[InsightRow]:
        context = self._context(account, level, since, until)
        params = self._insight_params(level, since, until)
        for page in self._pages(f"{account}/insights", params, context=context):
            for raw in page:
                yield self._row(raw, account, level, since, until)

    def _insights_async(
        self, account: str, level: str, since: dt.date, until: dt.date, *, retried: bool
    ) -> Iterator[InsightRow]:
        context = self._context(account, level, since, until)
        try:
            started = self.request(
                "POST",
                f"{account}/insights",
                self._insight_params(level, since, until),
                context=f"{context} (starting report run)",
                reducible=True,
            )
        except _ReduceData as signal:
            status = f"Meta asked for less data ({signal.error.describe()})"
        else:
            run_id = str(started.get("report_run_id") or "")
            if not _ID.fullmatch(run_id):
                raise MetaApiError(f"{context}: starting a report run returned no report_run_id")
            self.stats.async_jobs += 1
            status = self._wait_for_report(run_id, context)
            if status == _JOB_DONE:
                for page in self._pages(f"{run_id}/insights", {}, context=f"{context} (report run {run_id})"):
                    for raw in page:
                        yield self._row(raw, account, level, since, until)
                return
        if not retried:
            self._log.warning("%s: report run ended with %s; retrying it once", context, status)
            yield from self._insights_async(account, level, since, until, retried=True)
            return
        if since == until:
            raise MetaReportJobError(f"{context}: report run ended with {status} twice, even for a single day")
        middle = since + dt.timedelta(days=((until - since).days + 1) // 2 - 1)
        self._log.warning(
            "%s: report run ended with %s twice; splitting into %s..%s and %s..%s",
            context,
            status,
            since,
            middle,
            middle + dt.timedelta(days=1),
            until,
        )
        for part_since, part_until in ((since, middle), (middle + dt.timedelta(days=1), until)):
            yield from self._insights_async(account, level, part_since, part_until, retried=False)

    def _wait_for_report(self, run_id: str, context: str) -> str:
        """Poll a report run with growing sleeps until it finishes, fails or times out."""
        deadline = self._clock() + self.settings.async_timeout_seconds
        pause = self.settings.async_poll_initial
        while True:
            job = self.request(
                "GET",
                run_id,
                {"fields": "id,async_status,async_percent_completion"},
                context=f"{context} (report run {run_id})",
            )
            status = str(job.get("async_status") or "")
            if status == _JOB_DONE or status in _JOB_FAILED:
                return status
            if self._clock() + pause > deadline:
                return (
                    f"no result within {self.settings.async_timeout_seconds:g}s (META_ASYNC_TIMEOUT_SECONDS; "
                    f"last status {status!r})"
                )
            self._sleep(pause)
            self.stats.response_seconds += pause
            pause = min(pause * 2, self.settings.async_poll_max)

    def _row(self, raw: Any, account: str, level: str, since: dt.date, until: dt.date) -> InsightRow:
        row = parse_insight_row(raw, account, level, since, until)
        self.stats.rows += 1
        return row

    # --- campaigns, ad sets and ads ----------------------------------------------------------

    def objects(self, ad_account_id: str, kind: str) -> Iterator[MetaObject]:
        """Every campaign, ad set or ad (`kind`) of the ad account, whatever its effective status,
        streamed page by page and validated: one request per page of `page_size` objects."""
        if kind not in OBJECT_FIELDS:
            raise ValueError(f"kind must be one of {', '.join(OBJECT_FIELDS)}, got {kind!r}")
        account = _account_path(ad_account_id)
        params = {
            "fields": ",".join(OBJECT_FIELDS[kind]),
            "filtering": json.dumps(
                [{"field": "effective_status", "operator": "IN", "value": list(EFFECTIVE_STATUSES)}]
            ),
        }
        context = f"ad account {account}, {kind}s"
        for page in self._pages(f"{account}/{kind}s", params, context=context):
            for raw in page:
                yield parse_object(raw, account, kind)

    # --- ad accounts and tokens --------------------------------------------------------------

    def ad_account(self, ad_account_id: str) -> AdAccount:
        """Currency and time zone of an ad account; asked once per client."""
        account = _account_path(ad_account_id)
        if account not in self._accounts:
            body = self.request("GET", account, {"fields": _AD_ACCOUNT_FIELDS}, context=f"ad account {account}")
            self._accounts[account] = _ad_account_of(body, account)
        return self._accounts[account]

    def ad_accounts(self) -> list[AdAccount]:
        """The ad accounts this token can read (`/me/adaccounts`), each checked as `ad_account` checks one."""
        out = []
        context = "listing the token's ad accounts"
        for page in self._pages("me/adaccounts", {"fields": _AD_ACCOUNT_FIELDS}, context=context):
            for item in page:
                digits = item.get("account_id") if isinstance(item, dict) else None
                if not isinstance(digits, str) or not _ID.fullmatch(digits):
                    raise MetaApiError(f"{context}: an ad account has no account_id of digits ({digits!r})")
                out.append(_ad_account_of(item, f"act_{digits}"))
        return out

    def _app_token(self) -> str:
        if not (self.settings.app_id and self.settings.app_secret):
            raise MetaApiError("META_APP_ID and META_APP_SECRET are needed to inspect or extend tokens")
        app_token = f"{self.settings.app_id}|{self.settings.app_secret}"
        register_secret(app_token)
        return app_token

    def debug_token(self) -> TokenInfo:
        """What Meta knows of this client's token: validity, expiry, scopes."""
        body = self.request(
            "GET",
            "debug_token",
            {"input_token": self._token},
            context="inspecting the token",
            token=self._app_token(),
        )
        data = body.get("data") or {}
        return TokenInfo(
            is_valid=bool(data.get("is_valid")),
            expires_at=_utc_from_epoch(data.get("expires_at")),
            data_access_expires_at=_utc_from_epoch(data.get("data_access_expires_at")),
            scopes=tuple(data.get("scopes") or ()),
            app_id=data.get("app_id"),
            type=data.get("type"),
            user_id=data.get("user_id"),
        )

    def exchange_token(self, now: dt.datetime | None = None) -> ExchangedToken:
        """A long-lived token in exchange for this one (`fb_exchange_token`), about 60 days."""
        self._app_token()
        body = self.request(
            "GET",
            "oauth/access_token",
            {
                "grant_type": "fb_exchange_token",
                "client_id": self.settings.app_id,
                "client_secret": self.settings.app_secret,
                "fb_exchange_token": self._token,
            },
            context="extending the token",
            authenticated=False,
        )
        token = body.get("access_token")
        if not token:
            raise MetaApiError("extending the token: Meta's answer has no access_token")
        register_secret(token)
        expires_in = body.get("expires_in")
        now = now or dt.datetime.now(dt.UTC)
        return ExchangedToken(
            access_token=token,
            token_type=body.get("token_type"),
            expires_at=now + dt.timedelta(seconds=int(expires_in)) if expires_in else None,
        )


def parse_insight_row(
    raw: Any, account: str, level: str, since: dt.date, until: dt.date, *, conversions: bool = True
) -> InsightRow:
    """One of Meta's insight rows, parsed and validated: the single parser of the package.

    Everything a row holds is checked here, before any stored row is replaced: ASCII digits only,
    ids and counts that fit their columns, money within NUMERIC(18, 2) with no more decimals than
    the currency has, and never rounded. Each error names the ad account, the date and the field.
    `conversions=False` skips the conversion lists, for a row read back after it was validated.
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
        if not isinstance(value, str | int) or isinstance(value, bool) or not _ID.fullmatch(str(value)):
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
        **ids,
    )


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
        name=name,
        status=raw["status"],
        effective_status=raw["effective_status"],
        objective=objective,
        campaign_id=raw.get("campaign_id") if parents else None,
        adset_id=raw.get("adset_id") if kind == "ad" else None,
        created_time=times["created_time"],
        updated_time=times["updated_time"],
    )


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


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


def _permanent(error: GraphError, context: str) -> MetaApiError:
    text = f"{context}: {error.describe()}"
    if error.code == 100 and error.subcode == 33:
        return MetaPermissionError(f"{text} (the ad account does not exist or this token cannot read it)", error=error)
    if error.code == 10 or (error.code is not None and 200 <= error.code <= 299) or error.http_status == 403:
        return MetaPermissionError(f"{text} (the token lacks a permission, e.g. ads_read)", error=error)
    if error.code == OLD_DATA_CODE:
        return MetaApiError(f"{text} (Meta keeps insights for 37 months; start the range later)", error=error)
    return MetaApiError(text, error=error)
