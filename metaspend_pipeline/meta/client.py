"""The HTTP client for the parts of Meta's Graph API the pipeline uses. Plain Python, no Dagster.

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
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from metaspend_pipeline.meta.errors import (
    DEPRECATED_VERSION_CODE,
    OLD_DATA_CODE,
    GraphError,
    MetaApiError,
    MetaApiVersionError,
    MetaPermissionError,
    MetaReportJobError,
    MetaRetriesExhaustedError,
    MetaTokenError,
)
from metaspend_pipeline.meta.models import (
    CONVERSION_FIELDS,
    EFFECTIVE_STATUSES,
    ID_FIELDS,
    LEVELS,
    OBJECT_FIELDS,
    AdAccount,
    ExchangedToken,
    InsightRow,
    MetaObject,
    ReachRow,
    TokenInfo,
)
from metaspend_pipeline.meta.parsing import (
    ID_PATTERN,
    parse_ad_account,
    parse_exchanged_token,
    parse_insight_row,
    parse_object,
    parse_reach_row,
    utc_from_epoch,
)
from metaspend_pipeline.meta.throttle import AppPacer, Pacer, parse_usage, retry_after_seconds
from metaspend_pipeline.redaction import get_logger, protect_third_party_loggers, redact, register_secret
from metaspend_pipeline.settings import MetaApiSettings

_STATUS_FIELD = {"account": "ad", "campaign": "campaign", "adset": "adset", "ad": "ad"}
_METRICS = ("spend", "impressions", "clicks")
_REACH_METRICS = ("reach", "frequency", "impressions", "spend")
_JOB_DONE = "Job Completed"
_JOB_FAILED = frozenset({"Job Failed", "Job Skipped"})
_STRIPPED_PARAMS = frozenset({"access_token", "appsecret_proof"})
_AD_ACCOUNT_FIELDS = "id,account_id,name,currency,timezone_name,timezone_offset_hours_utc,account_status"
# What a report run's poll asks: its status, and (since v25.0) why it failed when it did.
_REPORT_RUN_FIELDS = (
    "id,async_status,async_percent_completion,error_code,error_message,error_subcode,error_user_title,error_user_msg"
)
# Meta's words when it answers a call to an expired version at a newer one (auto-upgrade).
VERSION_WARNING_HEADER = "X-Ad-Api-Version-Warning"
# Failures of the connection itself, before or during an answer: worth another attempt.
_TRANSIENT_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

log = get_logger(__name__)
protect_third_party_loggers()


@dataclass
class ClientStats:
    """What one client did, for logs and Dagster metadata; `version_warnings` are Meta's words
    (`X-Ad-Api-Version-Warning`, redacted), each once."""

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
    version_warnings: list[str] = field(default_factory=list)

    @property
    def meta_wait_seconds(self) -> float:
        """Time spent waiting on Meta: its answers, its report runs, and the pauses its limits impose."""
        return (
            self.response_seconds + self.throttle_wait_seconds + self.pacing_wait_seconds + self.app_pacing_wait_seconds
        )

    def add(self, other: ClientStats) -> None:
        for name in self.__dataclass_fields__:
            if name != "version_warnings":
                setattr(self, name, getattr(self, name) + getattr(other, name))
        for text in other.version_warnings:
            self.note_version_warning(text)

    def note_version_warning(self, text: str) -> bool:
        """Keep Meta's warning once; True the first time it is seen."""
        if text in self.version_warnings:
            return False
        self.version_warnings.append(text)
        return True


@dataclass(frozen=True)
class _Report:
    """What an insights request series asks for and how its rows are read: the daily insights (with
    or without a breakdown) or a period's reach."""

    what: str  # in messages: "insights", "age/gender insights", "reach"
    params: Callable[[dt.date, dt.date], dict[str, Any]]
    parse: Callable[[Any, dt.date, dt.date], Any]
    splittable: bool  # a failed report run may be split into two halves of its range


class _ReduceData(Exception):
    def __init__(self, error: GraphError) -> None:
        super().__init__(error.describe())
        self.error = error


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed by the app secret, as Meta's "Require App Secret" wants."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


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
                self._note_version_warning(response, context)
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
                    if error.code == DEPRECATED_VERSION_CODE:
                        raise MetaApiVersionError(
                            f"{context}: Meta no longer serves Marketing API {self.settings.api_version} "
                            f"(META_API_VERSION) and answers: {failure}; set META_API_VERSION to a version "
                            "Meta serves (see docs/meta-api.md#api-versions)",
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

    def _note_version_warning(self, response: requests.Response, context: str) -> None:
        """Meta answered at another version than META_API_VERSION and says so: kept for the caller to
        report once (the asset's check and run log, `accounts connect`), and logged here at DEBUG."""
        text = redact(" ".join(response.headers.get(VERSION_WARNING_HEADER, "").split()))
        if text and self.stats.note_version_warning(text):
            self._log.debug(
                "%s: Meta warns about Marketing API %s (META_API_VERSION): %s", context, self.settings.api_version, text
            )

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
        breakdown: Sequence[str] = (),
    ) -> Iterator[InsightRow]:
        """Daily rows of `level` for the ad account over [since, until], streamed page by page; with
        `breakdown` (Meta's `breakdowns`, e.g. ("age", "gender")), one row per day, object and value.

        Large requests (ad set and ad level over `async_min_days` days or more) run as async
        report jobs, as Meta recommends; `use_async` forces the choice.
        """
        account = self._check(ad_account_id, level, since, until)
        fields = tuple(breakdown)
        report = _Report(
            what=f"{'/'.join(fields)} insights" if fields else "insights",
            params=lambda s, u: self._insight_params(level, s, u, fields),
            parse=lambda raw, s, u: parse_insight_row(raw, account, level, s, u, breakdown=fields),
            splittable=True,
        )
        yield from self._report(account, level, since, until, report, use_async)

    def reach(
        self, ad_account_id: str, level: str, since: dt.date, until: dt.date, *, use_async: bool | None = None
    ) -> Iterator[ReachRow]:
        """Each object's unique reach, frequency, impressions and spend over the whole of [since, until]
        (`time_increment=all_days`): one row per object, counted by Meta for the period, which a sum of
        days would overcount. A failed report run is retried once but never split: two halves' reach
        do not add up to the whole's."""
        account = self._check(ad_account_id, level, since, until)
        report = _Report(
            what="reach",
            params=lambda s, u: self._reach_params(level, s, u),
            parse=lambda raw, s, u: parse_reach_row(raw, account, level, s, u),
            splittable=False,
        )
        yield from self._report(account, level, since, until, report, use_async)

    def _check(self, ad_account_id: str, level: str, since: dt.date, until: dt.date) -> str:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if since > until:
            raise ValueError(f"since {since} is after until {until}")
        return _account_path(ad_account_id)

    def _report(
        self, account: str, level: str, since: dt.date, until: dt.date, report: _Report, use_async: bool | None
    ) -> Iterator[Any]:
        days = (until - since).days + 1
        if use_async is None:
            use_async = level in ("adset", "ad") and days >= self.settings.async_min_days
        if use_async:
            yield from self._insights_async(account, level, since, until, report, retried=False)
        else:
            yield from self._insights_sync(account, level, since, until, report)

    def _status_filter(self, level: str) -> str:
        return json.dumps(
            [{"field": f"{_STATUS_FIELD[level]}.effective_status", "operator": "IN", "value": list(EFFECTIVE_STATUSES)}]
        )

    def _insight_params(
        self, level: str, since: dt.date, until: dt.date, breakdown: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        # a breakdown's rows carry no conversions: only spend, impressions and clicks are kept of them
        fields = [
            "date_start",
            "date_stop",
            "account_id",
            "account_currency",
            *_METRICS,
            *(() if breakdown else CONVERSION_FIELDS),
            *ID_FIELDS[level],
        ]
        params = {
            "level": level,
            "fields": ",".join(fields),
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
            "time_increment": "1",
            "filtering": self._status_filter(level),
        }
        if breakdown:
            params["breakdowns"] = ",".join(breakdown)
        else:
            params["action_attribution_windows"] = json.dumps(list(self.settings.attribution_windows))
        return params

    def _reach_params(self, level: str, since: dt.date, until: dt.date) -> dict[str, Any]:
        fields = ["date_start", "date_stop", "account_id", "account_currency", *_REACH_METRICS, *ID_FIELDS[level]]
        return {
            "level": level,
            "fields": ",".join(fields),
            "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
            "time_increment": "all_days",
            "filtering": self._status_filter(level),
        }

    def _context(self, account: str, level: str, since: dt.date, until: dt.date, what: str = "insights") -> str:
        span = since.isoformat() if since == until else f"{since}..{until}"
        return f"ad account {account}, {level} {what} {span}"

    def _insights_sync(
        self, account: str, level: str, since: dt.date, until: dt.date, report: _Report
    ) -> Iterator[Any]:
        context = self._context(account, level, since, until, report.what)
        for page in self._pages(f"{account}/insights", report.params(since, until), context=context):
            for raw in page:
                yield self._row(report, raw, since, until)

    def _insights_async(
        self, account: str, level: str, since: dt.date, until: dt.date, report: _Report, *, retried: bool
    ) -> Iterator[Any]:
        context = self._context(account, level, since, until, report.what)
        try:
            started = self.request(
                "POST",
                f"{account}/insights",
                report.params(since, until),
                context=f"{context} (starting report run)",
                reducible=True,
            )
        except _ReduceData as signal:
            status = f"Meta asked for less data ({signal.error.describe()})"
        else:
            run_id = str(started.get("report_run_id") or "")
            if not ID_PATTERN.fullmatch(run_id):
                raise MetaApiError(f"{context}: starting a report run returned no report_run_id")
            self.stats.async_jobs += 1
            status = self._wait_for_report(run_id, context)
            if status == _JOB_DONE:
                for page in self._pages(f"{run_id}/insights", {}, context=f"{context} (report run {run_id})"):
                    for raw in page:
                        yield self._row(report, raw, since, until)
                return
        if not retried:
            self._log.warning("%s: report run ended with %s; retrying it once", context, status)
            yield from self._insights_async(account, level, since, until, report, retried=True)
            return
        if since == until or not report.splittable:
            why = "even for a single day" if since == until else "and a period's reach cannot be split"
            raise MetaReportJobError(f"{context}: report run ended with {status} twice, {why}")
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
            yield from self._insights_async(account, level, part_since, part_until, report, retried=False)

    def _wait_for_report(self, run_id: str, context: str) -> str:
        """Poll a report run with growing sleeps until it finishes, fails or times out."""
        deadline = self._clock() + self.settings.async_timeout_seconds
        pause = self.settings.async_poll_initial
        while True:
            job = self.request(
                "GET", run_id, {"fields": _REPORT_RUN_FIELDS}, context=f"{context} (report run {run_id})"
            )
            status = str(job.get("async_status") or "")
            if status == _JOB_DONE:
                return status
            if status in _JOB_FAILED:
                return status + _report_run_error(job)
            if self._clock() + pause > deadline:
                return (
                    f"no result within {self.settings.async_timeout_seconds:g}s (META_ASYNC_TIMEOUT_SECONDS; "
                    f"last status {status!r})"
                )
            self._sleep(pause)
            self.stats.response_seconds += pause
            pause = min(pause * 2, self.settings.async_poll_max)

    def _row(self, report: _Report, raw: Any, since: dt.date, until: dt.date) -> Any:
        row = report.parse(raw, since, until)
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
            self._accounts[account] = parse_ad_account(body, account)
        return self._accounts[account]

    def ad_accounts(self) -> list[AdAccount]:
        """The ad accounts this token can read (`/me/adaccounts`), each checked as `ad_account` checks one."""
        out = []
        context = "listing the token's ad accounts"
        for page in self._pages("me/adaccounts", {"fields": _AD_ACCOUNT_FIELDS}, context=context):
            for item in page:
                digits = item.get("account_id") if isinstance(item, dict) else None
                if not isinstance(digits, str) or not ID_PATTERN.fullmatch(digits):
                    raise MetaApiError(f"{context}: an ad account has no account_id of digits ({digits!r})")
                out.append(parse_ad_account(item, f"act_{digits}"))
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
            expires_at=utc_from_epoch(data.get("expires_at")),
            data_access_expires_at=utc_from_epoch(data.get("data_access_expires_at")),
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
        exchanged = parse_exchanged_token(body, now or dt.datetime.now(dt.UTC))
        register_secret(exchanged.access_token)
        return exchanged


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _report_run_error(job: Mapping[str, Any]) -> str:
    """Why a report run failed, from the fields a failed run carries since v25.0 (`error_code` a signed
    int): ' (error_code -2, error_subcode 1815107: message; title: user message)', or '' without them."""
    code, subcode = _signed_int(job.get("error_code")), _signed_int(job.get("error_subcode"))
    named = (("error_code", code), ("error_subcode", subcode))
    codes = ", ".join(f"{name} {value}" for name, value in named if value is not None)
    title, user = (redact(str(job.get(k) or "")).strip() for k in ("error_user_title", "error_user_msg"))
    texts = [
        redact(str(job.get("error_message") or "")).strip(),
        f"{title}: {user}" if title and user else title or user,
    ]
    text = "; ".join(t for t in texts if t)
    if not codes and not text:
        return ""
    return f" ({codes}{': ' if codes and text else ''}{text})"


def _signed_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _permanent(error: GraphError, context: str) -> MetaApiError:
    text = f"{context}: {error.describe()}"
    if error.code == 100 and error.subcode == 33:
        return MetaPermissionError(f"{text} (the ad account does not exist or this token cannot read it)", error=error)
    if error.code == 10 or (error.code is not None and 200 <= error.code <= 299) or error.http_status == 403:
        return MetaPermissionError(f"{text} (the token lacks a permission, e.g. ads_read)", error=error)
    if error.code == OLD_DATA_CODE:
        return MetaApiError(f"{text} (Meta keeps insights for 37 months; start the range later)", error=error)
    return MetaApiError(text, error=error)
