"""`metaspend sandbox serve`: a local HTTP server that behaves like Meta's Graph API.

It serves the endpoints the pipeline uses with Meta's shapes and quirks (string metrics, omitted
zero rows, archived and deleted objects hidden without a status filter, cursor paging with
absolute `next` URLs that carry the token, usage headers, the 37-month limit, async report
runs, token exchange and inspection, appsecret_proof enforcement) from the deterministic data of
`world.py`.

Insights take `breakdowns` (`age,gender`, `age`, `gender`; `country`;
`publisher_platform,platform_position,device_platform`, `publisher_platform`,
`publisher_platform,platform_position`, `device_platform`; anything else is #100) and answer the
breakdown fields beside the metrics, splitting each object-day exactly; and `reach` and
`frequency` among the `fields`, unique counts over each row's period. Unique counts reach back 13
months (`graph.UNIQUE_HISTORY_MONTHS`): older ranges are refused (#100) with breakdowns, and answered
without reach and frequency without them.

Where each part lives, in this package:
  server.py     `Sandbox`: its state, configuration, tokens and their authorization, the request
                log, and the routing of every call; `SandboxServer` serves it on a socket
  graph.py      the Graph API endpoints, their URLs and what only they use (paging, cursors,
                status filters, conversion fields, report runs)
  limits.py     the rate limits, per ad account and for the app, and the usage headers
  faults.py     the faults: which call one hits, the error it answers with, what it breaks
  admin.py      the admin endpoints under `/__sandbox/`, listed below
  responses.py  the JSON answer and Meta's error envelope (`GraphError`), which all of them use
  world.py      the demo organizations, ad accounts, objects and their spend and conversions
  ecb.py        the ECB's reference rates, which admin.py serves
  control.py    the client of the admin endpoints, for the CLI, the demo, tests and benchmarks
A Graph call goes through `Sandbox._dispatch`: it is logged, waits out `latency_seconds`, is
refused (#2635) or marked as upgraded when its version is one Meta no longer serves as such, and
takes its fault (a reset, slow or malformed one acts there and then), has its appsecret_proof
checked and is counted against the rate limits; then the fault's Graph error answers it, or its
endpoint does, applying the faults that change an answer rather than replace it.

Only requests naming a loopback host (`localhost`, 127.0.0.0/8, `[::1]`, with or without a port) or
the address it was told to listen on are answered: another site's page whose name resolves to
127.0.0.1 (DNS rebinding) is refused with 403. Admin POSTs need `Content-Type: application/json`
(415 otherwise), which a page of another site cannot send without the browser asking first.

Admin endpoints under `/__sandbox/` let tests and benchmarks change its behaviour while it runs:
  POST   /__sandbox/faults         [{"kind": ..., "match": "insights", "times": 1, "skip": 0, ...}]
  DELETE /__sandbox/faults         remove all faults, forget requests and usage, restore the startup config
  POST   /__sandbox/config         {"latency_seconds": 0.2, "rate_limit_calls": 50, "expired_versions": ["v24.0"], ...}
Versions, as Meta's (`expired_versions`, `oldest_version`, `latest_version`): a call under an expired
version is answered at the next live one with an `X-Ad-Api-Version-Warning` header saying so; a call
below the oldest version Meta still answers gets HTTP 400 #2635 naming the latest version.
Rate limits, as Meta's: `rate_limit_calls` per ad account in any `rate_limit_window_seconds`
(the business-use-case limit, code 80000 beyond it) and `app_rate_limit_calls` for the whole app
in any `app_rate_limit_window_seconds` (code 4 beyond it), both reported in the usage headers.
  GET    /__sandbox/requests       what was asked (secrets replaced by markers)
  GET    /__sandbox/truth?ad_account=act_1&level=ad&since=...&until=...
         [&kind=conversions&windows=7d_click,1d_view]  the rows of meta_spend_daily (meta_conversions_daily)
         [&kind=breakdown&breakdown=age_gender|country|placement]  the daily rows broken down by that set
         [&kind=reach]  reach and frequency per object over the whole range (time_increment=all_days)
  GET    /__sandbox/organizations  the demo organizations, their ad accounts (and currencies) and tokens
  GET    /__sandbox/objects?ad_account=act_1[&kind=campaign]  every campaign, ad set and ad, any status
  POST   /__sandbox/objects        {"id": ..., "name": ...}: rename an object (its updated_time moves to now)
  POST   /__sandbox/tokens         {"token": ..., "organization_id": ..., "expires_in": 60, "revoked": false}
  GET    /__sandbox/ecb/eurofxref-hist.xml (and -hist-90d.xml, -daily.xml)  the ECB's reference rates (`ecb.py`)
  GET    /__sandbox/ecb/truth?since=...&until=...  the rows a correct fx_rates_daily holds
Fault kinds: throttle (code, subcode, regain_minutes, reset_seconds, is_transient, retry_after), http429 (retry_after),
server_error (code, http_status, is_transient), reduce_data, reset, slow (seconds), malformed,
token_expired, token_invalid, permission, unknown_object, job_failed (error_code, error_message,
error_subcode, error_user_title, error_user_msg: the failed run's error fields), job_skipped (POST only),
corrupt_row (field, value; a missing value removes the field from the page's first row, or from
the answer of oauth/access_token, or report_run_id from a report run's start),
reset_mid_body (the headers and half the body, then a reset), foreign_next (base_url: the page's
`paging.next` points at that scheme and host instead of the sandbox's, as a hostile answer would).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from metaspend_pipeline.sandbox import admin, graph
from metaspend_pipeline.sandbox.ecb import EcbRates
from metaspend_pipeline.sandbox.faults import (
    ENDPOINT_FAULTS,
    Fault,
    broken_midway,
    fault_error,
    reset_connection,
    take_fault,
)
from metaspend_pipeline.sandbox.limits import account_usage
from metaspend_pipeline.sandbox.responses import GraphError, json_response
from metaspend_pipeline.sandbox.world import Ad, AdSet, Campaign, World

DEFAULT_APP_ID = "1000000000000001"
DEFAULT_APP_SECRET = "sandbox-app-secret"  # noqa: S105 - the sandbox's fake app secret
_SECRET_PARAMS = ("access_token", "appsecret_proof", "client_secret", "fb_exchange_token", "input_token")


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
    # Meta's versions: calls to an expired one are answered at the next live version with an
    # X-Ad-Api-Version-Warning header; calls below `oldest_version` get #2635 naming `latest_version`.
    expired_versions: list[str] = dataclasses.field(default_factory=list)
    oldest_version: str = ""
    latest_version: str = "v27.0"


@dataclass
class TokenRecord:
    organization_id: str
    ad_accounts: tuple[str, ...]
    expires_at: float | None  # epoch seconds; None never expires
    revoked: bool = False
    user_id: str = "10000000001"


class Sandbox:
    """The WSGI application and its state; thread-safe. The modules of this package read and
    change its private state under `_lock`; nothing outside the package does."""

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
        self._jobs: dict[str, graph.Job] = {}
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
        # a rule belongs to one map, and every sandbox has its own: each gets copies
        self._url_map = Map([rule.empty() for rule in (*admin.RULES, *graph.RULES)])
        self._served_on: set[str] = set()  # a non-loopback address it was told to listen on

    def serve_on(self, host: str) -> None:
        """Also answer requests naming `host`, the address it listens on, unless that is a wildcard
        (0.0.0.0, ::): then only loopback names and addresses are answered."""
        name = _host_name(host)
        try:
            if ipaddress.ip_address(name).is_unspecified:
                return
        except ValueError:
            pass
        self._served_on.add(name)

    # --- state -------------------------------------------------------------------------------

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
                "currencies": {a: self.world.accounts[a].currency for a in o.ad_accounts},
                "token": o.token,
                "provider": o.provider,
            }
            for o in self.world.organizations
        ]

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC).date()

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

    # --- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
        if not self._host_allowed(host):
            # a page of another site whose name resolves to 127.0.0.1 (DNS rebinding) names its own host
            refused = json_response(
                {
                    "error": f"Host {host!r} refused: the sandbox answers requests to localhost, 127.0.0.0/8 "
                    "and [::1] only"
                },
                403,
            )
            return refused(environ, start_response)
        return self._dispatch(request, environ)(environ, start_response)

    def _host_allowed(self, host: str) -> bool:
        name = _host_name(host)
        return is_loopback_host(name) or name in self._served_on

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
        if endpoint in admin.ENDPOINTS:
            if request.method == "POST" and request.mimetype != "application/json":
                # a form or text/plain POST is what another site's page may send without asking first
                return json_response({"error": "an admin POST needs Content-Type: application/json"}, 415)
            try:
                return admin.ENDPOINTS[endpoint](self, request, **args)
            except HTTPException as exc:  # a body that is not JSON
                return json_response({"error": exc.description}, exc.code or 400)
        params = {**request.args.to_dict(), **request.form.to_dict()}
        token, via_header = self._token_of(request, params)
        entry = self._log(request, endpoint, params, token, via_header)
        if self.config.latency_seconds:
            time.sleep(self.config.latency_seconds)
        account = f"act_{args['digits']}" if "digits" in args else graph.job_account(self, args.get("run_id"))
        headers: dict[str, str] = {}
        try:
            headers = graph.version_headers(self, args["version"])
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
                headers |= account_usage(self, account, throttle=fault)
            if fault is not None and fault.kind not in ENDPOINT_FAULTS:
                raise fault_error(self, fault, headers)
            response = graph.ENDPOINTS[endpoint](self, graph.Call(request, params, token, args, fault))
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


def _host_name(host: str) -> str:
    """The name or address of a Host header, without its port or an IPv6 address's brackets."""
    host = host.strip().lower()
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback_host(name: str) -> bool:
    """localhost, an address of 127.0.0.0/8, or ::1 (without brackets or port)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SandboxServer:
    """The sandbox on a real socket, served from a background thread."""

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server: BaseWSGIServer = make_server(host, port, sandbox, threaded=True)
        sandbox.serve_on(host)
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
