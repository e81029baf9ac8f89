"""`metaspend sandbox`: the local Meta Marketing API (and ECB) to build, test and demo against."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import urllib.parse
from typing import Any

import click
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.meta.versions import as_meta_serves_them, version_key
from metaspend_pipeline.sandbox.control import SandboxAdmin
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.tokens import KeyRing


@cli.group("sandbox")
def sandbox_group() -> None:
    """A local Meta Marketing API to build, test and demo against."""


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=None,
    type=int,
    help="Default: the port of META_GRAPH_API_URL when it is a loopback http:// address (the demo's, after "
    "`source .metaspend/demo.env`), else 8765.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sandbox's data.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to every answer.")
@click.option("--rate-limit-calls", default=None, type=int, help="Calls per ad account per window before 80000.")
@click.option("--rate-limit-window", default=None, type=float, help="The rate-limit window, in seconds.")
@click.option("--app-rate-limit-calls", default=None, type=int, help="Calls of the whole app per window before code 4.")
@click.option("--app-rate-limit-window", default=None, type=float, help="The app-wide window, in seconds.")
@click.option("--require-appsecret-proof", is_flag=True, help="Refuse calls without a valid appsecret_proof.")
@click.option(
    "--expired-version",
    "expired_versions",
    multiple=True,
    help="A Marketing API version Meta no longer serves as such (e.g. v24.0): its calls are answered at the "
    "next live version with an X-Ad-Api-Version-Warning header; repeatable. Default: the versions past their "
    "published expiry today (meta/versions.py).",
)
@click.option(
    "--oldest-version",
    default=None,
    help="The oldest version answered at all: calls below it get error #2635. Default: the oldest version "
    "whose expiry Meta published (meta/versions.py).",
)
@click.option("--bench-ads", default=0, type=int, help="Add a large benchmark account with this many ads.")
@click.option(
    "--bench-accounts", default=0, type=int, help="Add this many benchmark accounts (200 ads each, or --bench-ads)."
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    help='A fault from the start, as JSON, e.g. \'{"kind": "throttle", "code": 80000, "times": 3}\'; repeatable. '
    "POST /__sandbox/faults changes them while it runs.",
)
def sandbox_serve(
    host: str,
    port: int,
    seed: int,
    latency: float,
    rate_limit_calls: int | None,
    rate_limit_window: float | None,
    app_rate_limit_calls: int | None,
    app_rate_limit_window: float | None,
    require_appsecret_proof: bool,
    expired_versions: tuple[str, ...],
    oldest_version: str,
    bench_ads: int,
    bench_accounts: int,
    faults: tuple[str, ...],
) -> None:
    """Serve the sandbox until interrupted. META_APP_ID / META_APP_SECRET, when set, are its app."""
    port = port if port is not None else default_port()
    from metaspend_pipeline.sandbox.server import Sandbox, SandboxConfig, SandboxServer

    api = MetaApiSettings.from_env()
    for version in (*expired_versions, *([oldest_version] if oldest_version else [])):
        try:
            version_key(version)
        except ValueError as exc:
            raise InvalidInputError(f"--expired-version/--oldest-version: {exc}") from None
    served = as_meta_serves_them(dt.datetime.now(dt.UTC).date())
    config = SandboxConfig(
        latency_seconds=latency,
        require_appsecret_proof=require_appsecret_proof,
        expired_versions=list(expired_versions) or served.expired,
        oldest_version=served.oldest if oldest_version is None else oldest_version,
        latest_version=served.latest,
    )
    changes: dict[str, Any] = {
        "app_id": api.app_id,
        "app_secret": api.app_secret,
        "rate_limit_calls": rate_limit_calls,
        "rate_limit_window_seconds": rate_limit_window,
        "app_rate_limit_calls": app_rate_limit_calls,
        "app_rate_limit_window_seconds": app_rate_limit_window,
    }
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    parsed = []
    for text in faults:
        try:
            fault = json.loads(text)
        except ValueError:
            raise InvalidInputError(f"--fault {text!r} is not JSON") from None
        if not isinstance(fault, dict) or "kind" not in fault:
            raise InvalidInputError(f'--fault {text!r} needs an object with a "kind"')
        parsed.append(fault)
    if not _is_loopback(host):
        click.echo(
            f"metaspend: warning: the sandbox listens on {host}, reachable from other machines, and its "
            "/__sandbox/organizations endpoint hands out the demo organizations' tokens to anyone who asks; "
            "use --host 127.0.0.1 unless that is what you want",
            err=True,
        )
    server = SandboxServer(
        Sandbox(seed, config, bench_ads=bench_ads, bench_accounts=bench_accounts, faults=parsed), host, port
    )
    click.echo(f"Meta sandbox (seed {seed}) serving on {server.url}")
    click.echo(f"point the pipeline at it:  export METASPEND_ENV=development META_GRAPH_API_URL={server.url}")
    click.echo(f"connect its organizations: metaspend sandbox connect --url {server.url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("sandbox stopped")


DEFAULT_PORT = 8765


def default_port() -> int:
    """META_GRAPH_API_URL's port when it names this machine over http (where the pipeline will look for
    the sandbox), else 8765."""
    url = urllib.parse.urlsplit(os.environ.get("META_GRAPH_API_URL", ""))
    if url.scheme == "http" and url.hostname and _is_loopback(url.hostname) and url.port:
        return url.port
    return DEFAULT_PORT


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@sandbox_group.command("connect")
@click.option("--url", default=None, help="The sandbox's URL; default META_GRAPH_API_URL.")
def sandbox_connect(url: str | None) -> None:
    """Connect the sandbox's organizations, with their tokens encrypted (tokens are never shown)."""
    settings = load_settings()
    engine = migrated_engine(settings)
    url = url or MetaApiSettings.from_env().graph_api_url
    connected = connect_sandbox_organizations(engine, KeyRing.from_settings(settings), url)
    for organization_id, ad_accounts in connected.items():
        click.echo(f"connected {organization_id}: {', '.join(ad_accounts)}")


def connect_sandbox_organizations(engine: sa.Engine, keyring: KeyRing, url: str) -> dict[str, list[str]]:
    """Store the sandbox's organizations as connected accounts, tokens encrypted; one connected for the
    first time gets the reporting currency `accounts connect` would give it (its ad accounts' own, USD
    when they are mixed)."""
    from metaspend_pipeline.fx import default_reporting_currency

    organizations = SandboxAdmin(url).organizations()
    with engine.begin() as conn:
        for org in organizations:
            organization_id = org["organization_id"]
            credentials.store_connection(
                conn, keyring, organization_id, org["provider"], org["ad_accounts"], org["token"], None
            )
            if store.stored_reporting_currency(conn, organization_id) is None:
                currency, _ = default_reporting_currency(org["currencies"].values())
                store.set_reporting_currency(conn, organization_id, currency)
    return {org["organization_id"]: org["ad_accounts"] for org in organizations}
