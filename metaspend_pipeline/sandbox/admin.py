"""The sandbox's own endpoints under `/__sandbox/`: how tests, benchmarks and the demo steer it
while it runs and ask it what a correct load holds.

Faults, configuration, the request log, the truth of `meta_spend_daily` and
`meta_conversions_daily` (and of the breakdowns, reach and frequency), every object whatever its status (and renaming one), extra tokens, the
demo organizations, and the ECB's feeds and the truth of `fx_rates_daily`. They are no part of
Meta's API: `Sandbox` answers them before logging, faults, rate limits and authorization, and
`control.py` is their client. The server's module docstring lists them with their parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from metaspend_pipeline.sandbox.ecb import FEEDS as ECB_FEEDS
from metaspend_pipeline.sandbox.responses import json_response
from metaspend_pipeline.sandbox.world import BREAKDOWN_SETS, DEFAULT_ATTRIBUTION

if TYPE_CHECKING:
    from metaspend_pipeline.sandbox.server import Sandbox


def faults(sandbox: Sandbox, request: Request) -> Response:
    """GET lists the faults still to come, POST adds one or a list, DELETE resets the sandbox."""
    if request.method == "POST":
        body = request.get_json()
        sandbox.add_faults(body if isinstance(body, list) else [body])
    elif request.method == "DELETE":
        sandbox.reset()
    with sandbox._lock:
        return json_response([dataclasses.asdict(f) for f in sandbox._faults])


def config(sandbox: Sandbox, request: Request) -> Response:
    """GET the configuration, POST changes to it; the app secret is never shown."""
    if request.method == "POST":
        sandbox.configure(**request.get_json())
    return json_response(dataclasses.asdict(sandbox.config) | {"app_secret": "<secret>"})


def requests(sandbox: Sandbox, request: Request) -> Response:
    return json_response(sandbox.requests_log())


def truth(sandbox: Sandbox, request: Request) -> Response:
    """The rows a complete, correct load of the ad account holds, of spend or (`kind=conversions`)
    of conversions in the attribution `windows`; `kind=breakdown` the daily rows broken down by
    the `breakdown` set (`age_gender`, `country`, `placement`); `kind=reach` reach and frequency
    over the whole range."""
    args = request.args
    where = (
        args["ad_account"],
        args.get("level", "ad"),
        dt.date.fromisoformat(args["since"]),
        dt.date.fromisoformat(args["until"]),
    )
    if args.get("kind") == "conversions":
        windows = [w for w in args.get("windows", ",".join(DEFAULT_ATTRIBUTION)).split(",") if w]
        return json_response({"rows": sandbox.world.conversion_truth(*where, windows)})
    if args.get("kind") == "breakdown":
        breakdown = args.get("breakdown", "")
        if breakdown not in BREAKDOWN_SETS:
            return json_response({"error": f"breakdown must be one of {', '.join(BREAKDOWN_SETS)}"}, 400)
        return json_response({"rows": sandbox.world.breakdown_truth(*where, breakdown)})
    if args.get("kind") == "reach":
        return json_response({"rows": sandbox.world.reach_truth(*where)})
    return json_response({"rows": sandbox.world.truth(*where)})


def objects(sandbox: Sandbox, request: Request) -> Response:
    """GET every campaign, ad set and ad of an ad account, any status; POST renames one."""
    if request.method == "POST":
        body = request.get_json()
        try:
            sandbox.rename(str(body["id"]), str(body["name"]))
        except KeyError:
            return json_response({"error": f"no campaign, ad set or ad {body.get('id')!r}"}, 404)
        return json_response({"ok": True})
    account = request.args["ad_account"]
    if account not in sandbox.world.accounts:
        return json_response({"error": f"no ad account {account!r}"}, 404)
    kinds = [request.args["kind"]] if "kind" in request.args else ["campaign", "adset", "ad"]
    return json_response({kind: sandbox.objects(account, kind) for kind in kinds})


def organizations(sandbox: Sandbox, request: Request) -> Response:
    return json_response(sandbox.organizations())


def tokens(sandbox: Sandbox, request: Request) -> Response:
    """A token of an organization: expiring, revoked, or for other ad accounts than its own."""
    body = request.get_json()
    sandbox.add_token(
        body["token"],
        body["organization_id"],
        expires_in=body.get("expires_in"),
        revoked=bool(body.get("revoked")),
        ad_accounts=body.get("ad_accounts"),
    )
    return json_response({"ok": True})


def ecb_feed(sandbox: Sandbox, request: Request, feed: str) -> Response:
    """One of the ECB's XML files as of today (the ECB's own URLs end the same way)."""
    key = (feed, sandbox.today())
    with sandbox._lock:
        if key not in sandbox._ecb_feeds:
            sandbox._ecb_feeds = {k: v for k, v in sandbox._ecb_feeds.items() if k[1] == key[1]}  # today's alone
            sandbox._ecb_feeds[key] = sandbox.ecb.feed(feed, key[1]).encode()
        body = sandbox._ecb_feeds[key]
    return Response(body, mimetype="text/xml")


def ecb_truth(sandbox: Sandbox, request: Request) -> Response:
    """The rows a correct `fx_rates_daily` holds from `since` to `until`."""
    since, until = (dt.date.fromisoformat(request.args[name]) for name in ("since", "until"))
    rows = [
        {**row, "date": str(row["date"]), "rate": str(row["rate"]), "ecb_date": str(row["ecb_date"])}
        for row in sandbox.ecb.truth(since, until)
    ]
    return json_response({"rows": rows})


# The admin URLs and the endpoint of each; a URL's variables are passed on as keyword arguments.
RULES = [
    Rule("/__sandbox/faults", endpoint="faults", methods=["GET", "POST", "DELETE"]),
    Rule("/__sandbox/config", endpoint="config", methods=["GET", "POST"]),
    Rule("/__sandbox/requests", endpoint="requests"),
    Rule("/__sandbox/truth", endpoint="truth"),
    Rule("/__sandbox/organizations", endpoint="organizations"),
    Rule("/__sandbox/tokens", endpoint="tokens", methods=["POST"]),
    Rule("/__sandbox/objects", endpoint="objects", methods=["GET", "POST"]),
    Rule("/__sandbox/ecb/truth", endpoint="ecb_truth"),
    *(Rule(f"/__sandbox/ecb/{feed}", endpoint="ecb", defaults={"feed": feed}) for feed in ECB_FEEDS),
]
ENDPOINTS: dict[str, Callable[..., Response]] = {
    "faults": faults,
    "config": config,
    "requests": requests,
    "truth": truth,
    "organizations": organizations,
    "tokens": tokens,
    "objects": objects,
    "ecb_truth": ecb_truth,
    "ecb": ecb_feed,
}
