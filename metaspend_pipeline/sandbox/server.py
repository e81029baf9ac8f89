"""`metaspend sandbox serve`: a local HTTP server that behaves like Meta's Graph API.

It serves the endpoints the pipeline uses with Meta's shapes and quirks (string metrics, omitted
zero rows, archived and deleted objects hidden without a status filter, cursor paging with
absolute `next` URLs that carry the token, usage headers, the 37-month limit, async report
runs, token exchange and inspection, appsecret_proof enforcement) from the deterministic data of
`world.py`.

Admin endpoints under `/__sandbox/` let tests and benchmarks change its behaviour while it runs:
  POST   /__sandbox/faults         [{"kind": ..., "match": "insights", "times": 1, "skip": 0, ...}]
  DELETE /__sandbox/faults         remove all faults, forget requests and usage, restore the startup config
  POST   /__sandbox/config         {"latency_seconds": 0.2, "rate_limit_calls": 50, ...}
Rate limits, as Meta's: `rate_limit_calls` per ad account in any `rate_limit_window_seconds`
(the business-use-case limit, code 80000 beyond it) and `app_rate_limit_calls` for the whole app
in any `app_rate_limit_window_seconds` (code 4 beyond it), both reported in the usage headers.
  GET    /__sandbox/requests       what was asked (secrets replaced by markers)
  GET    /__sandbox/truth?ad_account=act_1&level=ad&since=...&until=...
         [&kind=conversions&windows=7d_click,1d_view]  the rows of meta_spend_daily (meta_conversions_daily)
  GET    /__sandbox/organizations  the demo organizations, their ad accounts and tokens
  GET    /__sandbox/objects?ad_account=act_1[&kind=campaign]  every campaign, ad set and ad, any status
  POST   /__sandbox/objects        {"id": ..., "name": ...}: rename an object (its updated_time moves to now)
  POST   /__sandbox/tokens         {"token": ..., "organization_id": ..., "expires_in": 60, "revoked": false}
  GET    /__sandbox/ecb/eurofxref-hist.xml (and -hist-90d.xml, -daily.xml)  the ECB's reference rates (`ecb.py`)
  GET    /__sandbox/ecb/truth?since=...&until=...  the rows a correct fx_rates_daily holds
Fault kinds: throttle (code, subcode, regain_minutes, reset_seconds, is_transient, retry_after), http429 (retry_after),
server_error (code, http_status, is_transient), reduce_data, reset, slow (seconds), malformed,
token_expired, token_invalid, permission, unknown_object, job_failed, job_skipped (POST only),
corrupt_row (field, value; a missing value removes the field from the page's first row, or from
the answer of oauth/access_token, or report_run_id from a report run's start),
reset_mid_body (the headers and half the body, then a reset), foreign_next (base_url: the page's
`paging.next` points at that scheme and host instead of the sandbox's, as a hostile answer would).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from metaspend_pipeline.sandbox.ecb import FEEDS as ECB_FEEDS
from metaspend_pipeline.sandbox.ecb import EcbRates
from metaspend_pipeline.sandbox.faults import (
    ENDPOINT_FAULTS,
    Fault,
    broken_midway,
    corrupt,
    fault_error,
    reset_connection,
    take_fault,
)
from metaspend_pipeline.sandbox.limits import account_usage
from metaspend_pipeline.sandbox.responses import REDUCE_MESSAGE, GraphError, json_response
from metaspend_pipeline.sandbox.world import (
    DEFAULT_ATTRIBUTION,
    DEFAULT_VISIBLE,
    EVENT_TYPES,
    WINDOWS,
    Ad,
    AdSet,
    Campaign,
    SandboxAdAccount,
    World,
    aggregate,
    aggregate_conversions,
)

DEFAULT_APP_ID = "1000000000000001"
DEFAULT_APP_SECRET = "sandbox-app-secret"  # noqa: S105 - the sandbox's fake app secret
MAX_HISTORY_MONTHS = 37
_SECRET_PARAMS = ("access_token", "appsecret_proof", "client_secret", "fb_exchange_token", "input_token")
# The object edges and the fields each kind of object has.
_EDGES = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}
_COMMON_FIELDS = ("id", "name", "status", "effective_status", "account_id", "created_time", "updated_time")
_OBJECT_FIELDS = {
    "campaign": frozenset({*_COMMON_FIELDS, "objective"}),
    "adset": frozenset({*_COMMON_FIELDS, "campaign_id"}),
    "ad": frozenset({*_COMMON_FIELDS, "campaign_id", "adset_id"}),
}
_NODE_TYPES = {"campaign": "Campaign", "adset": "AdSet", "ad": "Ad"}


@dataclass
class SandboxConfig:
    latency_seconds: float = 0.0
    app_id: str = DEFAULT_APP_ID
    app_secret: str = DEFAULT_APP_SECRET
    require_appsecret_proof: bool = False
    max_page_size: int = 1000
    rate_limit_calls: int = 100_000
    rate_limit_window_seconds: float = 300.0
    app_rate_limit_calls: int = 1_000_000
    app_rate_limit_window_seconds: float = 300.0
    async_job_seconds: float = 0.3
    async_fail_above_days: int = 0
    token_lifetime_seconds: int = 5_183_944


@dataclass
class TokenRecord:
    organization_id: str
    ad_accounts: tuple[str, ...]
    expires_at: float | None  # epoch seconds; None never expires
    revoked: bool = False
    user_id: str = "10000000001"


class Call(NamedTuple):
    """One Graph API call as an endpoint sees it."""

    request: Request
    params: dict[str, str]
    token: str | None
    args: dict[str, str]
    fault: Fault | None


@dataclass
class Job:
    id: str
    account: str
    query: dict[str, Any]
    created: float
    days: int
    outcome: str | None = None  # forced "Job Failed" / "Job Skipped"


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text.split(":", 1)[1])
    except (ValueError, IndexError):
        raise GraphError(400, 100, "Invalid cursor") from None


def _months_ago(today: dt.date, months: int) -> dt.date:
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return dt.date(year, month + 1, min(today.day, 28))


class Sandbox:
    """The WSGI application and its state; thread-safe."""

    def __init__(
        self,
        seed: int = 0,
        config: SandboxConfig | None = None,
        *,
        bench_ads: int = 0,
        bench_accounts: int = 0,
        faults: Iterable[dict[str, Any]] = (),
        clock: Any = time.time,
    ) -> None:
        self.world = World(seed, bench_ads=bench_ads, bench_accounts=bench_accounts)
        self.ecb = EcbRates(seed)
        self._ecb_feeds: dict[tuple[str, dt.date], bytes] = {}
        self.config = config or SandboxConfig()
        self._startup_config = dataclasses.replace(self.config)  # what reset() returns to
        self._clock = clock
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._requests: list[dict[str, Any]] = []
        self._calls: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._app_calls: collections.deque[float] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._job_ids = itertools.count(1_571_860_060_019_548)
        self._traces = itertools.count(1)
        self._rows_cache: collections.OrderedDict[str, list[dict[str, str]]] = collections.OrderedDict()
        self.tokens: dict[str, TokenRecord] = {}
        self._renames: dict[str, tuple[str, float]] = {}  # object id -> (name, when renamed)
        self._objects: dict[str, Campaign | AdSet | Ad] = {
            o.id: o for a in self.world.accounts.values() for o in (*a.campaigns, *a.adsets, *a.ads)
        }
        for org in self.world.organizations:
            self.tokens[org.token] = TokenRecord(org.organization_id, org.ad_accounts, None)
        self.add_faults(faults)
        self._url_map = Map(
            [
                Rule("/__sandbox/faults", endpoint="faults", methods=["GET", "POST", "DELETE"]),
                Rule("/__sandbox/config", endpoint="config", methods=["GET", "POST"]),
                Rule("/__sandbox/requests", endpoint="requests"),
                Rule("/__sandbox/truth", endpoint="truth"),
                Rule("/__sandbox/organizations", endpoint="organizations"),
                Rule("/__sandbox/tokens", endpoint="tokens", methods=["POST"]),
                Rule("/__sandbox/objects", endpoint="objects", methods=["GET", "POST"]),
                Rule("/__sandbox/ecb/truth", endpoint="ecb_truth"),
                *(Rule(f"/__sandbox/ecb/{feed}", endpoint="ecb", defaults={"feed": feed}) for feed in ECB_FEEDS),
                # the Graph API's reads are GETs; only insights also take a POST (a report run)
                Rule("/<version>/act_<digits>/<any(campaigns, adsets, ads):edge>", endpoint="edge", methods=["GET"]),
                Rule("/<version>/act_<digits>/insights", endpoint="insights", methods=["GET", "POST"]),
                Rule("/<version>/act_<digits>", endpoint="ad_account", methods=["GET"]),
                Rule("/<version>/me/adaccounts", endpoint="me_adaccounts", methods=["GET"]),
                Rule("/<version>/debug_token", endpoint="debug_token", methods=["GET"]),
                Rule("/<version>/oauth/access_token", endpoint="access_token", methods=["GET"]),
                Rule("/<version>/<run_id>/insights", endpoint="job_insights", methods=["GET"]),
                Rule("/<version>/<run_id>", endpoint="job", methods=["GET"]),
            ]
        )

    # --- admin -------------------------------------------------------------------------------

    def add_faults(self, faults: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for spec in faults:
                self._faults.append(Fault.from_spec(spec))

    def reset(self) -> None:
        """Back to the sandbox as it was started: no faults, no request log, no usage, and the
        configuration it was started with (app secret, appsecret_proof, latency, rate limits)."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._calls.clear()
            self._app_calls.clear()
            self._jobs.clear()
            self._renames.clear()
            self._rows_cache.clear()
            self.config = dataclasses.replace(self._startup_config)
            for org in self.world.organizations:
                self.tokens[org.token] = TokenRecord(org.organization_id, org.ad_accounts, None)

    def configure(self, **changes: Any) -> None:
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)

    def requests_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def add_token(
        self,
        token: str,
        organization_id: str,
        *,
        expires_in: float | None = None,
        revoked: bool = False,
        ad_accounts: Iterable[str] | None = None,
    ) -> None:
        org = next((o for o in self.world.organizations if o.organization_id == organization_id), None)
        accounts = tuple(ad_accounts) if ad_accounts is not None else (org.ad_accounts if org else ())
        with self._lock:
            self.tokens[token] = TokenRecord(
                organization_id,
                accounts,
                self._clock() + expires_in if expires_in is not None else None,
                revoked,
            )

    def organizations(self) -> list[dict[str, Any]]:
        return [
            {
                "organization_id": o.organization_id,
                "ad_accounts": list(o.ad_accounts),
                "token": o.token,
                "provider": o.provider,
            }
            for o in self.world.organizations
        ]

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        return self._dispatch(request, environ)(environ, start_response)

    def _dispatch(self, request: Request, environ: dict[str, Any]) -> Response:
        adapter = self._url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return GraphError(
                400, 100, f"Unknown path components: {request.path}", kind="GraphMethodException"
            ).response(self._trace())
        except MethodNotAllowed as exc:
            if request.path.startswith("/__sandbox/"):
                return exc.get_response()  # type: ignore[return-value]
            return GraphError(
                400,
                100,
                f"Unsupported {request.method.lower()} request. Object at {request.path} does not support "
                "this operation.",
                kind="GraphMethodException",
            ).response(self._trace())
        except HTTPException as exc:
            return exc.get_response()  # type: ignore[return-value]
        if endpoint in {"faults", "config", "requests", "truth", "organizations", "tokens", "objects", "ecb_truth"}:
            return getattr(self, f"_admin_{endpoint}")(request)
        if endpoint == "ecb":
            return self._ecb(args["feed"])
        params = {**request.args.to_dict(), **request.form.to_dict()}
        token, via_header = self._token_of(request, params)
        entry = self._log(request, endpoint, params, token, via_header)
        if self.config.latency_seconds:
            time.sleep(self.config.latency_seconds)
        account = f"act_{args['digits']}" if "digits" in args else self._job_account(args.get("run_id"))
        headers: dict[str, str] = {}
        try:
            fault = take_fault(self, request.method, request.path)
            if fault is not None and fault.kind == "reset":
                reset_connection(environ)
                entry["status"] = "reset"
                return Response(b"", status=500)
            if fault is not None and fault.kind == "slow":
                time.sleep(float(fault.options.get("seconds", 2.0)))
                fault = None
            if fault is not None and fault.kind == "malformed":
                entry["status"] = 200
                return Response("<html>502 Bad Gateway</html>", status=200, mimetype="text/html")
            if endpoint not in {"access_token"}:
                self._check_proof(params, token)
            if account is not None:
                headers = account_usage(self, account, throttle=fault)
            if fault is not None and fault.kind not in ENDPOINT_FAULTS:
                raise fault_error(self, fault, headers)
            response = getattr(self, f"_{endpoint}")(Call(request, params, token, args, fault))
            if fault is not None and fault.kind == "reset_mid_body":
                return broken_midway(response, environ)
        except GraphError as exc:
            exc.headers = {**headers, **exc.headers}
            response = exc.response(self._trace())
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        entry["status"] = response.status_code
        return response

    # --- plumbing ----------------------------------------------------------------------------

    def _trace(self) -> str:
        return f"Sbx{next(self._traces):08d}"

    @staticmethod
    def _token_of(request: Request, params: dict[str, str]) -> tuple[str | None, bool]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in {"bearer", "oauth"} and value.strip():
            return value.strip(), True
        return params.get("access_token"), False

    def _log(
        self, request: Request, endpoint: str, params: dict[str, str], token: str | None, via_header: bool
    ) -> dict[str, Any]:
        proof = params.get("appsecret_proof")
        expected = self._proof(token) if token else None
        entry = {
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint,
            "params": {k: ("<secret>" if k in _SECRET_PARAMS else v) for k, v in params.items()},
            "token_in_header": via_header,
            "token_in_query": "access_token" in request.args,
            "token_fingerprint": hashlib.sha256(token.encode()).hexdigest()[:12] if token else None,
            "appsecret_proof": None if proof is None else hmac.compare_digest(proof, expected or ""),
            "status": None,
        }
        with self._lock:
            if len(self._requests) >= 100_000:
                del self._requests[:10_000]
            self._requests.append(entry)
        return entry

    def _proof(self, token: str) -> str:
        return hmac.new(self.config.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()

    def _check_proof(self, params: dict[str, str], token: str | None) -> None:
        proof = params.get("appsecret_proof")
        if proof is not None and token and not hmac.compare_digest(proof, self._proof(token)):
            raise GraphError(
                400, 100, "Invalid appsecret_proof provided in the API argument", kind="GraphMethodException"
            )
        if proof is None and self.config.require_appsecret_proof:
            raise GraphError(
                400,
                100,
                "API calls from the server require an appsecret_proof argument",
                kind="GraphMethodException",
            )

    def _authorize(self, token: str | None, account: str | None = None) -> TokenRecord:
        if not token:
            raise GraphError(400, 104, "An access token is required to request this resource.")
        with self._lock:
            record = self.tokens.get(token)
        if record is None or record.revoked:
            raise GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token", subcode=467)
        if record.expires_at is not None and record.expires_at <= self._clock():
            when = dt.datetime.fromtimestamp(record.expires_at, dt.UTC).strftime("%A, %d-%b-%y %H:%M:%S UTC")
            raise GraphError(400, 190, f"Error validating access token: Session has expired on {when}.", subcode=463)
        if account is not None and (account not in record.ad_accounts or account not in self.world.accounts):
            raise GraphError(
                400,
                100,
                f"Unsupported get request. Object with ID '{account}' does not exist, cannot "
                "be loaded due to missing permissions, or does not support this operation.",
                subcode=33,
                kind="GraphMethodException",
            )
        return record

    def _job_account(self, run_id: str | None) -> str | None:
        with self._lock:
            job = self._jobs.get(run_id or "")
        return job.account if job else None

    # --- insights ----------------------------------------------------------------------------

    def _query(self, account: str, params: dict[str, str]) -> dict[str, Any]:
        level = params.get("level", "account")
        if level not in {"account", "campaign", "adset", "ad"}:
            raise GraphError(
                400,
                100,
                f"(#100) level must be one of the following values: account, campaign, adset, ad (got {level})",
            )
        today = dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()
        try:
            if "time_range" in params:
                window = json.loads(params["time_range"])
                since = dt.date.fromisoformat(window["since"])
                until = dt.date.fromisoformat(window["until"])
            else:
                since, until = today - dt.timedelta(days=30), today - dt.timedelta(days=1)
        except (ValueError, KeyError, TypeError):
            raise GraphError(
                400, 100, "(#100) time_range must be {'since':'YYYY-MM-DD','until':'YYYY-MM-DD'}"
            ) from None
        if since > until:
            raise GraphError(400, 100, "(#100) time_range's since must be on or before its until")
        if since < _months_ago(today, MAX_HISTORY_MONTHS):
            raise GraphError(
                400,
                3018,
                "(#3018) The start date of the time range cannot be beyond 37 months from the current date",
            )
        asked = _status_filter(params, legacy=False)
        statuses: frozenset[str] | None = DEFAULT_VISIBLE if asked is None else asked
        increment = params.get("time_increment", "all_days")
        if increment not in {"1", "all_days"}:
            raise GraphError(400, 100, "(#100) the sandbox supports time_increment 1 or all_days")
        fields = [f for f in params.get("fields", "spend").split(",") if f]
        try:
            windows = json.loads(params.get("action_attribution_windows", "[]"))
        except ValueError:
            windows = None
        if not isinstance(windows, list) or any(w not in WINDOWS for w in windows):
            raise GraphError(
                400,
                100,
                "(#100) action_attribution_windows must be a list of: " + ", ".join(WINDOWS),
            )
        until = min(until, today)
        return {
            "windows": [w for w in WINDOWS if w in windows],
            "unified": params.get("use_unified_attribution_setting", "false").lower() == "true",
            "account": account,
            "level": level,
            "since": since,
            "until": until,
            "statuses": statuses,
            "daily": increment == "1",
            "fields": fields,
        }

    def _rows(self, q: dict[str, Any]) -> list[dict[str, str]]:
        statuses = sorted(q["statuses"]) if q["statuses"] is not None else None
        key = json.dumps(
            [
                q["account"],
                q["level"],
                str(q["since"]),
                str(q["until"]),
                statuses,
                q["daily"],
                q["fields"],
                q["windows"],
                q["unified"],
            ]
        )
        with self._lock:
            if key in self._rows_cache:
                self._rows_cache.move_to_end(key)
                return self._rows_cache[key]
        account = self.world.accounts[q["account"]]
        sums = (
            aggregate(self.world, q["account"], q["level"], q["since"], q["until"], q["statuses"], daily=q["daily"])
            if q["since"] <= q["until"]
            else {}
        )
        wants_conversions = any(f in q["fields"] for f in ("actions", "action_values", "purchase_roas"))
        conversions = (
            aggregate_conversions(
                self.world, q["account"], q["level"], q["since"], q["until"], q["statuses"], daily=q["daily"]
            )
            if wants_conversions and q["since"] <= q["until"]
            else {}
        )
        setting = account.attribution_setting if q["unified"] else DEFAULT_ATTRIBUTION
        rows = []
        for row_key, (spend, impressions, clicks) in sums.items():
            day, campaign_id, adset_id, ad_id = row_key
            values = {
                "account_id": account.account_id,
                "account_currency": account.currency,
                "spend": self.world.format_amount(q["account"], spend),
                "impressions": str(impressions),
                "clicks": str(clicks),
                "campaign_id": campaign_id,
                "adset_id": adset_id,
                "ad_id": ad_id,
                "account_name": account.name,
                "campaign_name": self._name_of(campaign_id),
                "adset_name": self._name_of(adset_id),
                "ad_name": self._name_of(ad_id),
                "objective": self._objective_of(campaign_id),
                **_conversion_fields(
                    self.world, q["account"], conversions.get(row_key, {}), spend, setting, q["windows"]
                ),
            }
            row = {k: v for k in q["fields"] if (v := values.get(k)) is not None}
            row["date_start"] = (day or q["since"]).isoformat()
            row["date_stop"] = (day or q["until"]).isoformat()
            rows.append(row)
        with self._lock:
            self._rows_cache[key] = rows
            while len(self._rows_cache) > 8:
                self._rows_cache.popitem(last=False)
        return rows

    def _page(
        self,
        request: Request,
        params: dict[str, str],
        token: str | None,
        rows: list[dict[str, str]],
        fault: Fault | None = None,
    ) -> Response:
        try:
            limit = int(params.get("limit", 25))
        except ValueError:
            raise GraphError(400, 100, "(#100) limit must be an integer") from None
        if limit > self.config.max_page_size:
            raise GraphError(500, 1, REDUCE_MESSAGE)
        limit = max(1, limit)
        offset = _offset(params.get("after"))
        page = rows[offset : offset + limit]
        if fault is not None and fault.kind == "corrupt_row" and page:
            first = dict(page[0])
            corrupt(first, fault)
            page = [first, *page[1:]]
        body: dict[str, Any] = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": _cursor(offset), "after": _cursor(offset + len(page))}}
            if offset + len(page) < len(rows):
                query = {k: v for k, v in params.items() if k not in {"after", "appsecret_proof"}}
                query.update({"access_token": token or "", "limit": str(limit), "after": _cursor(offset + len(page))})
                host = request.host_url.rstrip("/")
                if fault is not None and fault.kind == "foreign_next":
                    host = str(fault.options["base_url"]).rstrip("/")
                body["paging"]["next"] = f"{host}{request.path}?{urllib.parse.urlencode(query)}"
        return json_response(body)

    def _insights(self, call: Call) -> Response:
        request, params, token, fault = call.request, call.params, call.token, call.fault
        account = f"act_{call.args['digits']}"
        self._authorize(token, account)
        query = self._query(account, params)
        if request.method == "POST":
            days = (query["until"] - query["since"]).days + 1
            job = Job(id=str(next(self._job_ids)), account=account, query=query, created=self._clock(), days=days)
            if fault is not None and fault.kind in {"job_failed", "job_skipped"}:
                job.outcome = "Job Failed" if fault.kind == "job_failed" else "Job Skipped"
            elif self.config.async_fail_above_days and days > self.config.async_fail_above_days:
                job.outcome = "Job Failed"
            with self._lock:
                self._jobs[job.id] = job
            answer: dict[str, Any] = {"report_run_id": job.id}
            if fault is not None and fault.kind == "corrupt_row" and fault.options["field"] in answer:
                corrupt(answer, fault)
            return json_response(answer)
        return self._page(request, params, token, self._rows(query), fault)

    def _job_of(self, run_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(run_id)
        if job is None:
            raise GraphError(
                400,
                100,
                f"Unsupported get request. Object with ID '{run_id}' does not exist",
                subcode=33,
                kind="GraphMethodException",
            )
        return job

    def _job_status(self, job: Job) -> tuple[str, int]:
        elapsed = self._clock() - job.created
        duration = max(self.config.async_job_seconds, 1e-6)
        if elapsed >= duration:
            return (job.outcome or "Job Completed"), 100
        if job.outcome == "Job Skipped":
            return "Job Skipped", 0
        percent = int(100 * elapsed / duration)
        return ("Job Not Started" if percent < 10 else "Job Running"), percent

    def _job(self, call: Call) -> Response:
        token, args = call.token, call.args
        job = self._job_of(args["run_id"])
        self._authorize(token, job.account)
        status, percent = self._job_status(job)
        node = {
            "id": job.id,
            "account_id": job.account.removeprefix("act_"),
            "async_status": status,
            "async_percent_completion": percent,
            "date_start": job.query["since"].isoformat(),
            "date_stop": job.query["until"].isoformat(),
        }
        if "fields" not in call.params:
            return json_response(node)  # Meta's default fields of a report run
        # as Meta does: `id` and the fields asked for; a field a report run does not have is refused
        fields = [f for f in call.params["fields"].split(",") if f]
        unknown = [f for f in fields if f not in node]
        if unknown:
            raise GraphError(
                400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (AdReportRun)"
            )
        return json_response({"id": job.id} | {f: node[f] for f in fields})

    def _job_insights(self, call: Call) -> Response:
        request, params, token, args, fault = call.request, call.params, call.token, call.args, call.fault
        job = self._job_of(args["run_id"])
        self._authorize(token, job.account)
        status, _ = self._job_status(job)
        if status != "Job Completed":
            raise GraphError(400, 100, f"Report run {job.id} is not complete ({status})")
        return self._page(request, params, token, self._rows(job.query), fault)

    # --- campaigns, ad sets and ads ----------------------------------------------------------

    def _name_of(self, object_id: str | None) -> str | None:
        if object_id is None:
            return None
        with self._lock:
            renamed = self._renames.get(object_id)
        return renamed[0] if renamed else self._objects[object_id].name

    def _objective_of(self, campaign_id: str | None) -> str | None:
        campaign = self._objects.get(campaign_id or "")
        return campaign.objective if isinstance(campaign, Campaign) else None

    def objects(self, account_id: str, kind: str) -> list[dict[str, str]]:
        """Every campaign, ad set or ad of the ad account, whatever its status, with every field."""
        account = self.world.accounts[account_id]
        found: tuple[Campaign | AdSet | Ad, ...] = {
            "campaign": account.campaigns,
            "adset": account.adsets,
            "ad": account.ads,
        }[kind]
        offset = account.timezone_offset_hours_utc
        zone = dt.timezone(dt.timedelta(hours=float(offset)))
        out = []
        for o in found:
            with self._lock:
                renamed = self._renames.get(o.id)
            item = {
                "id": o.id,
                "account_id": account.account_id,
                "name": renamed[0] if renamed else o.name,
                "status": o.status,
                "effective_status": o.effective_status,
                "created_time": o.created_time,
                "updated_time": (
                    dt.datetime.fromtimestamp(renamed[1], zone).strftime("%Y-%m-%dT%H:%M:%S%z")
                    if renamed
                    else o.updated_time
                ),
            }
            if isinstance(o, Campaign):
                item["objective"] = o.objective
            if isinstance(o, AdSet):
                item["campaign_id"] = o.campaign.id
            if isinstance(o, Ad):
                item["campaign_id"] = o.campaign.id
                item["adset_id"] = o.adset.id
            out.append(item)
        return out

    def rename(self, object_id: str, name: str) -> None:
        """Rename a campaign, ad set or ad, as an advertiser does in Ads Manager."""
        if object_id not in self._objects:
            raise KeyError(object_id)
        with self._lock:
            self._renames[object_id] = (name, self._clock())
            self._rows_cache.clear()

    def _edge(self, call: Call) -> Response:
        """`/act_{id}/campaigns`, `/adsets`, `/ads`: archived and deleted left out unless asked for."""
        account = f"act_{call.args['digits']}"
        self._authorize(call.token, account)
        kind = _EDGES[call.args["edge"]]
        fields = [f for f in call.params.get("fields", "id").split(",") if f]
        unknown = [f for f in fields if f not in _OBJECT_FIELDS[kind]]
        if unknown:
            raise GraphError(
                400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type ({_NODE_TYPES[kind]})"
            )
        asked = _status_filter(call.params, legacy=True)
        statuses = DEFAULT_VISIBLE if asked is None else asked
        rows = [
            {f: item[f] for f in fields if f in item}
            for item in self.objects(account, kind)
            if item["effective_status"] in statuses
        ]
        return self._page(call.request, call.params, call.token, rows, call.fault)

    # --- accounts and tokens -----------------------------------------------------------------

    def _ad_account(self, call: Call) -> Response:
        token = call.token
        account_id = f"act_{call.args['digits']}"
        self._authorize(token, account_id)
        return json_response(_account_json(self.world.accounts[account_id], call.params))

    def _me_adaccounts(self, call: Call) -> Response:
        request, params, token = call.request, call.params, call.token
        record = self._authorize(token)
        rows = []
        for account_id in record.ad_accounts:
            account = self.world.accounts.get(account_id)
            if account is not None:
                rows.append(_account_json(account, params))
        return self._page(request, params, token, rows, call.fault)

    def _debug_token(self, call: Call) -> Response:
        params, token = call.params, call.token
        if token != f"{self.config.app_id}|{self.config.app_secret}":
            raise GraphError(400, 190, "Invalid OAuth access token signature.")
        with self._lock:
            record = self.tokens.get(params.get("input_token", ""))
        if record is None:
            return json_response(
                {
                    "data": {
                        "is_valid": False,
                        "error": {"code": 190, "message": "Invalid OAuth access token."},
                        "scopes": [],
                    }
                }
            )
        now = self._clock()
        valid = not record.revoked and (record.expires_at is None or record.expires_at > now)
        return json_response(
            {
                "data": {
                    "app_id": self.config.app_id,
                    "type": "USER",
                    "application": "metaspend sandbox",
                    "expires_at": int(record.expires_at) if record.expires_at else 0,
                    "data_access_expires_at": int(now + 90 * 86400),
                    "is_valid": valid,
                    "scopes": ["ads_read", "ads_management", "business_management"],
                    "user_id": record.user_id,
                }
            }
        )

    def _access_token(self, call: Call) -> Response:
        params = call.params
        if params.get("grant_type") != "fb_exchange_token":
            raise GraphError(400, 100, "The sandbox only supports grant_type=fb_exchange_token")
        if params.get("client_id") != self.config.app_id or params.get("client_secret") != self.config.app_secret:
            raise GraphError(400, 101, "Error validating application. Invalid application ID or client secret.")
        old = params.get("fb_exchange_token", "")
        record = self._authorize(old)
        new = "EAAsbx" + hashlib.sha256(f"{old}:{self._clock()}".encode()).hexdigest()[:40]
        lifetime = self.config.token_lifetime_seconds
        with self._lock:
            self.tokens[new] = TokenRecord(
                record.organization_id, record.ad_accounts, self._clock() + lifetime, user_id=record.user_id
            )
        answer: dict[str, Any] = {"access_token": new, "token_type": "bearer", "expires_in": lifetime}
        if call.fault is not None and call.fault.kind == "corrupt_row":
            corrupt(answer, call.fault)
        return json_response(answer)

    # --- admin endpoints ---------------------------------------------------------------------

    def _admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.get_json(force=True)
            self.add_faults(body if isinstance(body, list) else [body])
        elif request.method == "DELETE":
            self.reset()
        with self._lock:
            return json_response([dataclasses.asdict(f) for f in self._faults])

    def _admin_config(self, request: Request) -> Response:
        if request.method == "POST":
            self.configure(**request.get_json(force=True))
        return json_response(dataclasses.asdict(self.config) | {"app_secret": "<secret>"})

    def _admin_requests(self, request: Request) -> Response:
        return json_response(self.requests_log())

    def _admin_truth(self, request: Request) -> Response:
        args = request.args
        where = (
            args["ad_account"],
            args.get("level", "ad"),
            dt.date.fromisoformat(args["since"]),
            dt.date.fromisoformat(args["until"]),
        )
        if args.get("kind") == "conversions":
            windows = [w for w in args.get("windows", ",".join(DEFAULT_ATTRIBUTION)).split(",") if w]
            return json_response({"rows": self.world.conversion_truth(*where, windows)})
        return json_response({"rows": self.world.truth(*where)})

    def _admin_objects(self, request: Request) -> Response:
        if request.method == "POST":
            body = request.get_json(force=True)
            try:
                self.rename(str(body["id"]), str(body["name"]))
            except KeyError:
                return json_response({"error": f"no campaign, ad set or ad {body.get('id')!r}"}, 404)
            return json_response({"ok": True})
        account = request.args["ad_account"]
        if account not in self.world.accounts:
            return json_response({"error": f"no ad account {account!r}"}, 404)
        kinds = [request.args["kind"]] if "kind" in request.args else ["campaign", "adset", "ad"]
        return json_response({kind: self.objects(account, kind) for kind in kinds})

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()

    def _ecb(self, feed: str) -> Response:
        """One of the ECB's XML files as of today (the ECB's own URLs end the same way)."""
        key = (feed, self.today())
        with self._lock:
            if key not in self._ecb_feeds:
                self._ecb_feeds = {k: v for k, v in self._ecb_feeds.items() if k[1] == key[1]}  # today's alone
                self._ecb_feeds[key] = self.ecb.feed(feed, key[1]).encode()
            body = self._ecb_feeds[key]
        return Response(body, mimetype="text/xml")

    def _admin_ecb_truth(self, request: Request) -> Response:
        since, until = (dt.date.fromisoformat(request.args[name]) for name in ("since", "until"))
        rows = [
            {**row, "date": str(row["date"]), "rate": str(row["rate"]), "ecb_date": str(row["ecb_date"])}
            for row in self.ecb.truth(since, until)
        ]
        return json_response({"rows": rows})

    def _admin_organizations(self, request: Request) -> Response:
        return json_response(self.organizations())

    def _admin_tokens(self, request: Request) -> Response:
        body = request.get_json(force=True)
        self.add_token(
            body["token"],
            body["organization_id"],
            expires_in=body.get("expires_in"),
            revoked=bool(body.get("revoked")),
            ad_accounts=body.get("ad_accounts"),
        )
        return json_response({"ok": True})


def _conversion_fields(
    world: World,
    account: str,
    sums: dict[tuple[str, str], list[int]],
    spend_minor: int,
    setting: tuple[str, ...],
    windows: list[str],
) -> dict[str, list[dict[str, str]]]:
    """`actions`, `action_values` and `purchase_roas` as Meta writes them: numbers as strings, one
    key per asked window, zero windows, empty entries and empty lists left out."""
    actions: list[dict[str, str]] = []
    action_values: list[dict[str, str]] = []
    purchase_roas: list[dict[str, str]] = []
    for event, types in EVENT_TYPES.items():
        default = [sum(sums.get((event, w), (0, 0))[i] for w in setting) for i in (0, 1)]
        present = {w: sums[(event, w)] for w in windows if (event, w) in sums}
        if not default[0] and not present:
            continue
        count_entry = {"value": str(default[0]), **{w: str(c) for w, (c, _) in present.items()}}
        value_entry = {
            "value": world.format_amount(account, default[1]),
            **{w: world.format_amount(account, v) for w, (_, v) in present.items()},
        }
        for action_type in types:
            actions.append({"action_type": action_type, **count_entry})
            if event == "purchase":
                action_values.append({"action_type": action_type, **value_entry})
        if event == "purchase" and spend_minor:
            ratios = {"value": default[1], **{w: v for w, (_, v) in present.items()}}
            purchase_roas.append(
                {
                    "action_type": "omni_purchase",
                    **{
                        k: str((Decimal(v) / Decimal(spend_minor)).quantize(Decimal("0.001"), ROUND_HALF_UP))
                        for k, v in ratios.items()
                    },
                }
            )
    fields = {"actions": actions, "action_values": action_values, "purchase_roas": purchase_roas}
    return {name: items for name, items in fields.items() if items}


def _status_filter(params: dict[str, str], *, legacy: bool) -> frozenset[str] | None:
    """The effective statuses a request asks for: the last `filtering` IN on a field ending in
    `effective_status`, or (object edges, `legacy`) the older `effective_status=[...]` parameter;
    None when it asks for none."""
    statuses = None
    try:
        for f in json.loads(params.get("filtering") or "[]"):
            if str(f.get("field", "")).endswith("effective_status") and f.get("operator") == "IN":
                statuses = frozenset(f["value"])
        if statuses is None and legacy and params.get("effective_status"):
            statuses = frozenset(json.loads(params["effective_status"]))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise GraphError(400, 100, "(#100) filtering must be a JSON list of filters") from None
    return statuses


def _account_json(account: SandboxAdAccount, params: Mapping[str, str]) -> dict[str, Any]:
    """The ad account node as Meta answers it: `id` and the `fields` asked for (`id` and
    `account_id` when none are); a field an ad account does not have is refused with #100."""
    node = {
        "id": account.id,
        "account_id": account.account_id,
        "name": account.name,
        "currency": account.currency,
        "timezone_name": account.timezone_name,
        "timezone_offset_hours_utc": float(account.timezone_offset_hours_utc),
        "account_status": 1,
    }
    fields = [f for f in params.get("fields", "account_id").split(",") if f]
    unknown = [f for f in fields if f not in node]
    if unknown:
        raise GraphError(400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (AdAccount)")
    return {"id": account.id} | {f: node[f] for f in fields}


class SandboxServer:
    """The sandbox on a real socket, served from a background thread."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server: BaseWSGIServer = make_server(host, port, sandbox, threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="meta-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
