"""The Graph API endpoints the pipeline calls, with Meta's shapes and quirks.

Insights (synchronous, and asynchronous report runs with their status and their rows; with
`breakdowns`, and `reach` and `frequency` with their 13-month limit), the object
edges (campaigns, ad sets, ads), the ad account, `me/adaccounts`, `debug_token` and the token
exchange (`oauth/access_token`). Each endpoint is a function of the `Sandbox` and the `Call`; its
URL rule is in `RULES` and its function in `ENDPOINTS`, so a change to Meta's API is a change to
this module alone. By the time an endpoint runs, `Sandbox` has logged the call, checked its
appsecret_proof, counted it against the rate limits and answered any fault that is not one of
`faults.ENDPOINT_FAULTS`; the endpoint authorizes its token itself (`Sandbox._authorize`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from metaspend_pipeline.sandbox.faults import Fault, corrupt
from metaspend_pipeline.sandbox.responses import REDUCE_MESSAGE, GraphError, json_response
from metaspend_pipeline.sandbox.world import (
    BREAKDOWN_COMBINATIONS,
    BREAKDOWN_FIELDS,
    DEFAULT_VISIBLE,
    EVENT_TYPES,
    UNIQUE_FIELDS,
    WINDOWS,
    Campaign,
    SandboxAdAccount,
    World,
    aggregate,
    aggregate_breakdowns,
    aggregate_conversions,
    aggregate_reach,
    format_frequency,
    split_reach,
)

if TYPE_CHECKING:
    from metaspend_pipeline.sandbox.server import Sandbox

MAX_HISTORY_MONTHS = 37
# Since 2026-01-12 Meta keeps unique counts (reach, frequency) with breakdowns for 13 months: older
# ranges are refused with breakdowns, and answered without reach and frequency without them
UNIQUE_HISTORY_MONTHS = 13
UNIQUE_HISTORY_MESSAGE = "(#100) Reach and frequency with breakdowns are only available for the last 13 months"
_CONVERSION_FIELDS = ("actions", "action_values", "purchase_roas")
VERSION_WARNING_HEADER = "X-Ad-Api-Version-Warning"
_VERSION = re.compile(r"v([0-9]{1,3})\.([0-9]{1,3})", re.ASCII)
# The object edges and the fields each kind of object has.
_EDGES = {"campaigns": "campaign", "adsets": "adset", "ads": "ad"}
_COMMON_FIELDS = ("id", "name", "status", "effective_status", "account_id", "created_time", "updated_time")
_OBJECT_FIELDS = {
    "campaign": frozenset({*_COMMON_FIELDS, "objective"}),
    "adset": frozenset({*_COMMON_FIELDS, "campaign_id"}),
    "ad": frozenset({*_COMMON_FIELDS, "campaign_id", "adset_id"}),
}
_NODE_TYPES = {"campaign": "Campaign", "adset": "AdSet", "ad": "Ad"}


class Call(NamedTuple):
    """One Graph API call as an endpoint sees it."""

    request: Request
    params: dict[str, str]
    token: str | None
    args: dict[str, str]
    fault: Fault | None


@dataclass
class Job:
    """An asynchronous report run: the insights query it computes, from when."""

    id: str
    account: str
    query: dict[str, Any]
    created: float
    days: int
    outcome: str | None = None  # forced "Job Failed" / "Job Skipped"
    error: dict[str, Any] = dataclasses.field(default_factory=dict)  # a failed run's error fields (v25.0)


# A report run's fields; a failed one carries the error ones since v25.0 (`error_code` a signed int).
_REPORT_RUN_FIELDS = frozenset(
    {"id", "account_id", "async_status", "async_percent_completion", "date_start", "date_stop"}
    | {"error_code", "error_message", "error_subcode", "error_user_title", "error_user_msg"}
)
_JOB_ERROR = {
    "error_code": 1,
    "error_message": "An unknown error occurred while generating the report.",
    "error_subcode": 1815107,
    "error_user_title": "Report could not be generated",
    "error_user_msg": "Try again later, or ask for a shorter date range.",
}


def job_account(sandbox: Sandbox, run_id: str | None) -> str | None:
    """The ad account of a report run, whose rate limit its status and rows count against."""
    with sandbox._lock:
        job = sandbox._jobs.get(run_id or "")
    return job.account if job else None


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


def _page(
    sandbox: Sandbox,
    request: Request,
    params: dict[str, str],
    token: str | None,
    rows: list[dict[str, str]],
    fault: Fault | None = None,
) -> Response:
    """One page of `rows` at the `after` cursor, with Meta's `paging`: cursors, and an absolute
    `next` URL that carries the token while rows remain."""
    try:
        limit = int(params.get("limit", 25))
    except ValueError:
        raise GraphError(400, 100, "(#100) limit must be an integer") from None
    if limit > sandbox.config.max_page_size:
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


# --- versions --------------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, int] | None:
    match = _VERSION.fullmatch(version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_headers(sandbox: Sandbox, version: str) -> dict[str, str]:
    """How Meta treats a call's version: #2635 below the oldest it answers; for an expired one, the
    header saying the call was answered at the next live version; else nothing."""
    config = sandbox.config
    key = _version_key(version)
    oldest = _version_key(config.oldest_version)
    if key is not None and oldest is not None and key < oldest:
        raise GraphError(
            400,
            2635,
            "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest "
            f"version: {config.latest_version}.",
        )
    if key is None or version not in config.expired_versions:
        return {}
    newest_expired = max(k for k in map(_version_key, config.expired_versions) if k is not None)
    upgraded = f"v{newest_expired[0] + 1}.0"
    return {
        VERSION_WARNING_HEADER: f"Marketing API {version} has been deprecated. This call was automatically "
        f"upgraded to {upgraded}; calls that cannot be upgraded will fail. Please update your app to "
        f"{upgraded} or later."
    }


# --- insights --------------------------------------------------------------------------------


def _query(sandbox: Sandbox, account: str, params: dict[str, str]) -> dict[str, Any]:
    """An insights request's parameters, checked as Meta checks them."""
    level = params.get("level", "account")
    if level not in {"account", "campaign", "adset", "ad"}:
        raise GraphError(
            400,
            100,
            f"(#100) level must be one of the following values: account, campaign, adset, ad (got {level})",
        )
    today = sandbox.today()
    try:
        if "time_range" in params:
            window = json.loads(params["time_range"])
            since = dt.date.fromisoformat(window["since"])
            until = dt.date.fromisoformat(window["until"])
        else:
            since, until = today - dt.timedelta(days=30), today - dt.timedelta(days=1)
    except (ValueError, KeyError, TypeError):
        raise GraphError(400, 100, "(#100) time_range must be {'since':'YYYY-MM-DD','until':'YYYY-MM-DD'}") from None
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
    breakdowns = _breakdowns(params)
    if breakdowns and any(f in fields for f in _CONVERSION_FIELDS):
        raise GraphError(400, 100, "(#100) The sandbox does not break down actions, action_values or purchase_roas")
    unique = any(f in fields for f in UNIQUE_FIELDS)
    if unique and since < _months_ago(today, UNIQUE_HISTORY_MONTHS):
        if breakdowns:
            raise GraphError(400, 100, UNIQUE_HISTORY_MESSAGE)
        unique = False  # as Meta's synchronous calls do: the rows come without them
    until = min(until, today)
    return {
        "breakdowns": breakdowns,
        "unique": unique,
        "windows": [w for w in WINDOWS if w in windows],
        "account": account,
        "level": level,
        "since": since,
        "until": until,
        "statuses": statuses,
        "daily": increment == "1",
        "fields": fields,
    }


def _breakdowns(params: dict[str, str]) -> tuple[str, ...]:
    """The `breakdowns` asked for (a comma-separated list, or a JSON list as Meta's SDKs send it),
    in the order of their set (`world.BREAKDOWN_SETS`); refused with #100 as Meta refuses an
    unknown name or a combination it cannot break down by."""
    raw = params.get("breakdowns", "").strip()
    try:
        names = json.loads(raw) if raw.startswith("[") else raw.split(",")
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GraphError(400, 100, "(#100) breakdowns must be a list of breakdown names")
    names = [n.strip() for n in names if n.strip()]
    for i, name in enumerate(names):
        if name not in BREAKDOWN_FIELDS:
            raise GraphError(
                400,
                100,
                f"(#100) breakdowns[{i}] must be one of the following values: " + ", ".join(sorted(BREAKDOWN_FIELDS)),
            )
    if names and (len(set(names)) != len(names) or frozenset(names) not in BREAKDOWN_COMBINATIONS):
        raise GraphError(
            400, 100, f"(#100) Current combination of data breakdown columns ({', '.join(names)}) is invalid"
        )
    return tuple(f for f in BREAKDOWN_FIELDS if f in names)


def _rows(sandbox: Sandbox, q: dict[str, Any]) -> list[dict[str, str]]:
    """The rows of an insights query, as Meta writes them; the last few queries' rows are kept,
    since paging asks for the same query once a page."""
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
            q["breakdowns"],
            q["unique"],
        ]
    )
    with sandbox._lock:
        if key in sandbox._rows_cache:
            sandbox._rows_cache.move_to_end(key)
            return sandbox._rows_cache[key]
    world = sandbox.world
    account = world.accounts[q["account"]]
    sums = _sums(world, q)
    wants_conversions = any(f in q["fields"] for f in ("actions", "action_values", "purchase_roas"))
    conversions = (
        aggregate_conversions(world, q["account"], q["level"], q["since"], q["until"], q["statuses"], daily=q["daily"])
        if wants_conversions and q["since"] <= q["until"]
        else {}
    )
    reach = _reach(world, q, sums) if q["unique"] else {}
    # since 2025-06-10 Meta ignores use_unified_attribution_setting: the ad account's own setting, always
    setting = account.attribution_setting
    rows = []
    for (row_key, breakdown), (spend, impressions, clicks) in sums.items():
        day, campaign_id, adset_id, ad_id = row_key
        people = reach.get((row_key, breakdown))
        values = {
            "account_id": account.account_id,
            "account_currency": account.currency,
            "spend": world.format_amount(q["account"], spend),
            "impressions": str(impressions),
            "clicks": str(clicks),
            "campaign_id": campaign_id,
            "adset_id": adset_id,
            "ad_id": ad_id,
            "account_name": account.name,
            "campaign_name": _name_of(sandbox, campaign_id),
            "adset_name": _name_of(sandbox, adset_id),
            "ad_name": _name_of(sandbox, ad_id),
            "objective": _objective_of(sandbox, campaign_id),
            **_conversion_fields(world, q["account"], conversions.get(row_key, {}), spend, setting, q["windows"]),
        }
        if people is not None:
            values |= {"reach": str(people), "frequency": format_frequency(impressions, people)}
        row = {k: v for k in q["fields"] if (v := values.get(k)) is not None}
        row["date_start"] = (day or q["since"]).isoformat()
        row["date_stop"] = (day or q["until"]).isoformat()
        row.update(zip(q["breakdowns"], breakdown, strict=True))  # as Meta: after the dates
        rows.append(row)
    with sandbox._lock:
        sandbox._rows_cache[key] = rows
        while len(sandbox._rows_cache) > 8:
            sandbox._rows_cache.popitem(last=False)
    return rows


def _sums(world: World, q: dict[str, Any]) -> dict[tuple[Any, tuple[str, ...]], list[int]]:
    """(spend, impressions, clicks) per row of the query: per (day, object) key and the values of
    its breakdowns (none: `()`)."""
    if q["since"] > q["until"]:
        return {}
    where = (world, q["account"], q["level"], q["since"], q["until"], q["statuses"])
    if q["breakdowns"]:
        return aggregate_breakdowns(*where, q["breakdowns"], daily=q["daily"])
    return {(key, ()): value for key, value in aggregate(*where, daily=q["daily"]).items()}


def _reach(
    world: World, q: dict[str, Any], sums: dict[tuple[Any, tuple[str, ...]], list[int]]
) -> dict[tuple[Any, tuple[str, ...]], int]:
    """The reach of each row: its object's over its period, shared among its breakdown rows in
    proportion to their impressions (`world.split_reach`)."""
    if not sums:
        return {}
    where = (world, q["account"], q["level"], q["since"], q["until"], q["statuses"])
    people = aggregate_reach(*where, daily=q["daily"])
    if not q["breakdowns"]:
        return {row: people[row[0]] for row in sums}
    groups: dict[Any, list[tuple[Any, tuple[str, ...]]]] = {}
    for row in sums:
        groups.setdefault(row[0], []).append(row)
    out = {}
    for key, rows in groups.items():
        shares = split_reach(people[key], [sums[row][1] for row in rows])
        out.update(zip(rows, shares, strict=True))
    return out


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


def insights(sandbox: Sandbox, call: Call) -> Response:
    """`/act_{id}/insights`: a GET answers with the rows, a POST starts a report run."""
    request, params, token, fault = call.request, call.params, call.token, call.fault
    account = f"act_{call.args['digits']}"
    sandbox._authorize(token, account)
    query = _query(sandbox, account, params)
    if request.method == "POST":
        days = (query["until"] - query["since"]).days + 1
        job = Job(id=str(next(sandbox._job_ids)), account=account, query=query, created=sandbox._clock(), days=days)
        if fault is not None and fault.kind in {"job_failed", "job_skipped"}:
            job.outcome = "Job Failed" if fault.kind == "job_failed" else "Job Skipped"
        elif sandbox.config.async_fail_above_days and days > sandbox.config.async_fail_above_days:
            job.outcome = "Job Failed"
        if job.outcome == "Job Failed":
            job.error = _JOB_ERROR | {k: v for k, v in (fault.options if fault else {}).items() if k in _JOB_ERROR}
        with sandbox._lock:
            sandbox._jobs[job.id] = job
        answer: dict[str, Any] = {"report_run_id": job.id}
        if fault is not None and fault.kind == "corrupt_row" and fault.options["field"] in answer:
            corrupt(answer, fault)
        return json_response(answer)
    return _page(sandbox, request, params, token, _rows(sandbox, query), fault)


# --- report runs -----------------------------------------------------------------------------


def _job_of(sandbox: Sandbox, run_id: str) -> Job:
    with sandbox._lock:
        job = sandbox._jobs.get(run_id)
    if job is None:
        raise GraphError(
            400,
            100,
            f"Unsupported get request. Object with ID '{run_id}' does not exist",
            subcode=33,
            kind="GraphMethodException",
        )
    return job


def _job_status(sandbox: Sandbox, job: Job) -> tuple[str, int]:
    """A report run's status and percent: not started, running, then its outcome once
    `async_job_seconds` have passed (a skipped run says so at once)."""
    elapsed = sandbox._clock() - job.created
    duration = max(sandbox.config.async_job_seconds, 1e-6)
    if elapsed >= duration:
        return (job.outcome or "Job Completed"), 100
    if job.outcome == "Job Skipped":
        return "Job Skipped", 0
    percent = int(100 * elapsed / duration)
    return ("Job Not Started" if percent < 10 else "Job Running"), percent


def report_run(sandbox: Sandbox, call: Call) -> Response:
    """`/{report_run_id}`: the report run's node, the status the pipeline polls."""
    token, args = call.token, call.args
    job = _job_of(sandbox, args["run_id"])
    sandbox._authorize(token, job.account)
    status, percent = _job_status(sandbox, job)
    node = {
        "id": job.id,
        "account_id": job.account.removeprefix("act_"),
        "async_status": status,
        "async_percent_completion": percent,
        "date_start": job.query["since"].isoformat(),
        "date_stop": job.query["until"].isoformat(),
    }
    if status == "Job Failed":
        node |= job.error
    if "fields" not in call.params:
        return json_response(node)  # Meta's default fields of a report run
    # as Meta does: `id` and the fields asked for that have a value; a field a report run does not
    # have is refused
    fields = [f for f in call.params["fields"].split(",") if f]
    unknown = [f for f in fields if f not in _REPORT_RUN_FIELDS]
    if unknown:
        raise GraphError(
            400, 100, f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type (AdReportRun)"
        )
    return json_response({"id": job.id} | {f: node[f] for f in fields if f in node})


def report_run_insights(sandbox: Sandbox, call: Call) -> Response:
    """`/{report_run_id}/insights`: a completed report run's rows, paged."""
    request, params, token, args, fault = call.request, call.params, call.token, call.args, call.fault
    job = _job_of(sandbox, args["run_id"])
    sandbox._authorize(token, job.account)
    status, _ = _job_status(sandbox, job)
    if status != "Job Completed":
        raise GraphError(400, 100, f"Report run {job.id} is not complete ({status})")
    return _page(sandbox, request, params, token, _rows(sandbox, job.query), fault)


# --- campaigns, ad sets and ads --------------------------------------------------------------


def _name_of(sandbox: Sandbox, object_id: str | None) -> str | None:
    if object_id is None:
        return None
    with sandbox._lock:
        renamed = sandbox._renames.get(object_id)
    return renamed[0] if renamed else sandbox._objects[object_id].name


def _objective_of(sandbox: Sandbox, campaign_id: str | None) -> str | None:
    campaign = sandbox._objects.get(campaign_id or "")
    return campaign.objective if isinstance(campaign, Campaign) else None


def edge(sandbox: Sandbox, call: Call) -> Response:
    """`/act_{id}/campaigns`, `/adsets`, `/ads`: archived and deleted left out unless asked for."""
    account = f"act_{call.args['digits']}"
    sandbox._authorize(call.token, account)
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
        for item in sandbox.objects(account, kind)
        if item["effective_status"] in statuses
    ]
    return _page(sandbox, call.request, call.params, call.token, rows, call.fault)


# --- accounts and tokens ---------------------------------------------------------------------


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


def ad_account(sandbox: Sandbox, call: Call) -> Response:
    """`/act_{id}`: the ad account's node."""
    token = call.token
    account_id = f"act_{call.args['digits']}"
    sandbox._authorize(token, account_id)
    return json_response(_account_json(sandbox.world.accounts[account_id], call.params))


def me_adaccounts(sandbox: Sandbox, call: Call) -> Response:
    """`/me/adaccounts`: the ad accounts the token may read, paged."""
    request, params, token = call.request, call.params, call.token
    record = sandbox._authorize(token)
    rows = []
    for account_id in record.ad_accounts:
        account = sandbox.world.accounts.get(account_id)
        if account is not None:
            rows.append(_account_json(account, params))
    return _page(sandbox, request, params, token, rows, call.fault)


def debug_token(sandbox: Sandbox, call: Call) -> Response:
    """`/debug_token`: a token's inspection, asked with the app's own token."""
    params, token = call.params, call.token
    if token != f"{sandbox.config.app_id}|{sandbox.config.app_secret}":
        raise GraphError(400, 190, "Invalid OAuth access token signature.")
    with sandbox._lock:
        record = sandbox.tokens.get(params.get("input_token", ""))
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
    now = sandbox._clock()
    valid = not record.revoked and (record.expires_at is None or record.expires_at > now)
    return json_response(
        {
            "data": {
                "app_id": sandbox.config.app_id,
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


def access_token(sandbox: Sandbox, call: Call) -> Response:
    """`/oauth/access_token`: a valid token exchanged for a new long-lived one of the same user,
    organization and ad accounts."""
    params = call.params
    if params.get("grant_type") != "fb_exchange_token":
        raise GraphError(400, 100, "The sandbox only supports grant_type=fb_exchange_token")
    if params.get("client_id") != sandbox.config.app_id or params.get("client_secret") != sandbox.config.app_secret:
        raise GraphError(400, 101, "Error validating application. Invalid application ID or client secret.")
    old = params.get("fb_exchange_token", "")
    record = sandbox._authorize(old)  # neither revoked nor expired
    new = "EAAsbx" + hashlib.sha256(f"{old}:{sandbox._clock()}".encode()).hexdigest()[:40]
    lifetime = sandbox.config.token_lifetime_seconds  # 0: a token that never expires, without expires_in
    with sandbox._lock:
        sandbox.tokens[new] = dataclasses.replace(record, expires_at=sandbox._clock() + lifetime if lifetime else None)
    answer: dict[str, Any] = {"access_token": new, "token_type": "bearer"}
    if lifetime:
        answer["expires_in"] = lifetime
    if call.fault is not None and call.fault.kind == "corrupt_row":
        corrupt(answer, call.fault)
    return json_response(answer)


# The Graph API's URLs (its reads are GETs; only insights also take a POST, a report run) and
# the endpoint of each; `Sandbox` routes them after its admin URLs.
RULES = [
    Rule("/<version>/act_<digits>/<any(campaigns, adsets, ads):edge>", endpoint="edge", methods=["GET"]),
    Rule("/<version>/act_<digits>/insights", endpoint="insights", methods=["GET", "POST"]),
    Rule("/<version>/act_<digits>", endpoint="ad_account", methods=["GET"]),
    Rule("/<version>/me/adaccounts", endpoint="me_adaccounts", methods=["GET"]),
    Rule("/<version>/debug_token", endpoint="debug_token", methods=["GET"]),
    Rule("/<version>/oauth/access_token", endpoint="access_token", methods=["GET"]),
    Rule("/<version>/<run_id>/insights", endpoint="job_insights", methods=["GET"]),
    Rule("/<version>/<run_id>", endpoint="job", methods=["GET"]),
]
ENDPOINTS: dict[str, Callable[[Sandbox, Call], Response]] = {
    "edge": edge,
    "insights": insights,
    "ad_account": ad_account,
    "me_adaccounts": me_adaccounts,
    "debug_token": debug_token,
    "access_token": access_token,
    "job_insights": report_run_insights,
    "job": report_run,
}
