"""Asking the sandbox for insights over plain HTTP, as Meta is asked: for the tests of breakdowns and
reach, which compare its answers with each other and with its truth endpoints."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import requests

from metaspend_pipeline.sandbox.server import Sandbox
from metaspend_pipeline.sandbox.world import DEFAULT_VISIBLE

EVERY_STATUS = sorted(DEFAULT_VISIBLE | {"ARCHIVED", "DELETED"})
# the id fields a row of each level has
LEVEL_IDS = {
    "account": (),
    "campaign": ("campaign_id",),
    "adset": ("campaign_id", "adset_id"),
    "ad": ("campaign_id", "adset_id", "ad_id"),
}
LEVELS = tuple(LEVEL_IDS)


def token_for(sandbox: Sandbox, account: str) -> str:
    """The token of the demo organization that owns `account`."""
    return next(o.token for o in sandbox.world.organizations if account in o.ad_accounts)


def insights_params(
    token: str,
    since: dt.date,
    until: dt.date,
    *,
    level: str,
    fields: str = "spend,impressions,clicks",
    breakdowns: str | None = None,
    daily: bool = True,
    every_status: bool = True,
    limit: int = 1000,
) -> dict[str, str]:
    """An insights request's parameters: the level's ids beside `fields`, every effective status
    unless told otherwise."""
    params = {
        "access_token": token,
        "level": level,
        "fields": ",".join([*LEVEL_IDS[level], fields]),
        "time_range": json.dumps({"since": since.isoformat(), "until": until.isoformat()}),
        "time_increment": "1" if daily else "all_days",
        "limit": str(limit),
    }
    if breakdowns is not None:
        params["breakdowns"] = breakdowns
    if every_status:
        params["filtering"] = json.dumps(
            [{"field": f"{level}.effective_status", "operator": "IN", "value": EVERY_STATUS}]
        )
    return params


def read_pages(url: str, params: dict[str, str] | None) -> tuple[list[dict[str, Any]], int]:
    """Every row from `url` on, following `paging.next` (which carries the query); and how many pages."""
    rows: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = requests.get(next_url, params=params, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["data"]
        pages += 1
        next_url, params = body.get("paging", {}).get("next"), None
    return rows, pages


def get_insights(base_url: str, account: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """All the rows of a synchronous insights request."""
    return read_pages(f"{base_url}/{account}/insights", params)[0]


def report_run(base_url: str, account: str, params: dict[str, str]) -> str:
    """Start an asynchronous report run and wait for it to complete; its id."""
    started = requests.post(f"{base_url}/{account}/insights", data=params, timeout=30)
    assert started.status_code == 200, started.text
    run_id = started.json()["report_run_id"]
    deadline = time.monotonic() + 30
    while True:
        node = requests.get(f"{base_url}/{run_id}", params={"access_token": params["access_token"]}, timeout=30)
        if node.json()["async_status"] == "Job Completed":
            return run_id
        assert time.monotonic() < deadline, node.text
        time.sleep(0.02)


def graph_error(response: requests.Response) -> dict[str, Any]:
    """The error of a refused call: HTTP 400 with Meta's envelope."""
    assert response.status_code == 400, response.text
    return response.json()["error"]


def minor(spend: str, digits: int) -> int:
    """Spend as Meta writes it, in the currency's minor unit."""
    return int(Decimal(spend).scaleb(digits))


def object_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """The (day, campaign, ad set, ad) a row is of."""
    return (row.get("date_start"), row.get("campaign_id"), row.get("adset_id"), row.get("ad_id"))
