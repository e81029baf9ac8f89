"""The `metaspend` command: the warehouse, the token vault and connected accounts.

Bad input ends with a one-line `metaspend: error: ...` on standard error and exit code 2, and
nothing half-written. Tokens are read from standard input, never from arguments, and never
printed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.errors import InvalidInputError, MetaspendError, UnknownOrganizationError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.redaction import RedactingFilter, redact
from metaspend_pipeline.settings import MetaApiSettings, Settings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import DEFAULT_REPORTING_CURRENCY
from metaspend_pipeline.tokens import KeyRing, generate_key

EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """Turns the package's errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MetaspendError as exc:
            click.echo(f"metaspend: error: {redact(exc)}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("metaspend_pipeline").setLevel(logging.INFO)


def _settings() -> Settings:
    return Settings.from_env()


def _migrated_engine(settings: Settings) -> sa.Engine:
    return db.migrated_engine(settings.database_url)


def _parse_expiry(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"--expires-at {value!r} is not an ISO 8601 date-time, e.g. 2026-01-31T00:00:00Z"
        ) from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def read_token_from_stdin() -> str:
    """The token, from a pipe or typed at a hidden prompt; never an argument."""
    if sys.stdin is None:
        raise InvalidInputError("no access token on standard input")
    hidden_prompt = sys.stdin.isatty()
    token = (getpass.getpass("Meta access token (input hidden): ") if hidden_prompt else sys.stdin.read()).strip()
    if not token:
        raise InvalidInputError("the access token read from standard input is empty")
    if any(ch.isspace() for ch in token):
        raise InvalidInputError("the access token read from standard input contains white space")
    return token


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from metaspend_pipeline.report import format_table

    click.echo(format_table(headers, rows))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Meta ad spend into a warehouse, and ROAS from it."""
    _configure_logging()


# --- db --------------------------------------------------------------------------------------


@cli.group("db")
def db_group() -> None:
    """The warehouse schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (idempotent)."""
    settings = _settings()
    db.upgrade(settings.database_url)
    revision = db.current_revision(settings.database_url)
    click.echo(f"warehouse {db.display_url(settings.database_url)} is at revision {revision}")


@db_group.command("grant-bi")
@click.option("--role", required=True, help="The PostgreSQL role to create or update, e.g. metaspend_bi.")
@click.option(
    "--password-env",
    default=None,
    help="The environment variable holding the role's password. Without it the password is left as it is.",
)
def db_grant_bi(role: str, password_env: str | None) -> None:
    """Create or update a read-only role for BI tools: SELECT on the reporting tables, nothing else.

    PostgreSQL only. Run it again after `db upgrade` adds reporting tables.
    """
    from metaspend_pipeline.redaction import register_secret
    from metaspend_pipeline.storage import bi

    settings = _settings()
    role = bi.validate_role_name(role)
    if not db.is_postgres(db.engine_for(settings.database_url)):
        raise InvalidInputError(
            f"grant-bi needs PostgreSQL; the warehouse {db.display_url(settings.database_url)} is SQLite, "
            "which has no roles (give a BI tool a copy of the file instead)"
        )
    password = None
    if password_env is not None:
        password = os.environ.get(password_env) or None
        if password is None:
            raise InvalidInputError(f"--password-env {password_env}: the environment variable is not set or empty")
        register_secret(password)
    engine = _migrated_engine(settings)
    try:
        with engine.begin() as conn:
            report = bi.grant_bi(conn, role, password)
    except sa.exc.ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != bi.INSUFFICIENT_PRIVILEGE:
            raise
        raise InvalidInputError(
            f"grant-bi as {sa.make_url(settings.database_url).username or 'this user'} failed: "
            f"{redact(str(exc.orig).splitlines()[0])}; run it as the tables' owner with CREATEROLE, or as a "
            "superuser (METASPEND_DATABASE_URL of that user); nothing was changed"
        ) from None
    click.echo(
        f"{'created' if report.created else 'updated'} role {role}"
        f"{' with the password from ' + password_env if password_env else ' (password unchanged)'}: "
        f"SELECT on {', '.join(report.granted)}; nothing else"
    )
    if report.public_can_create:
        click.echo(
            "warning: every role (PUBLIC) may CREATE tables in this schema (PostgreSQL before 15); "
            "as the schema's owner run REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            err=True,
        )


# --- keys ------------------------------------------------------------------------------------


@cli.group("keys")
def keys_group() -> None:
    """Token encryption keys."""


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a new random key for META_TOKEN_ENCRYPTION_KEY."""
    click.echo(generate_key())


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored token with META_TOKEN_ENCRYPTION_KEY, in one transaction.

    Put the previous key in META_TOKEN_ENCRYPTION_OLD_KEYS first, so old tokens still decrypt.
    """
    settings = _settings()
    keyring = KeyRing.from_settings(settings)
    engine = _migrated_engine(settings)
    with engine.begin() as conn:
        report = credentials.rotate_keys(conn, keyring)
    click.echo(
        f"re-encrypted {report.reencrypted} token(s) with key {keyring.current_key_id}; "
        f"{report.already_current} already used it"
    )


# --- accounts --------------------------------------------------------------------------------


@cli.group("accounts")
def accounts_group() -> None:
    """Organizations' connected Meta accounts."""


@accounts_group.command("connect")
@click.option("--org", "organization_id", required=True, help="The organization's id in the product.")
@click.option(
    "--provider",
    type=click.Choice(["INSTAGRAM", "FACEBOOK"], case_sensitive=False),
    default="INSTAGRAM",
    show_default=True,
)
@click.option(
    "--ad-account",
    "ad_accounts",
    multiple=True,
    help="act_<digits>; repeat for several. Without it, the token's ad accounts are discovered from Meta.",
)
@click.option("--expires-at", default=None, help="When the token expires (ISO 8601); omit if it never does.")
@click.option(
    "--reporting-currency",
    default=None,
    help=f"The currency ROAS is also reported in (ISO 4217, e.g. EUR); default {DEFAULT_REPORTING_CURRENCY}, "
    "or the organization's current one when it is reconnected.",
)
def accounts_connect(
    organization_id: str,
    provider: str,
    ad_accounts: tuple[str, ...],
    expires_at: str | None,
    reporting_currency: str | None,
) -> None:
    """Connect an organization's Meta account; the token is read from standard input.

    With META_APP_ID and META_APP_SECRET set, the token is first checked with Meta's debug_token
    and its expiry stored; without --ad-account, the ad accounts come from /me/adaccounts.
    """
    from metaspend_pipeline.fx import validate_reporting_currency

    settings = _settings()
    keyring = KeyRing.from_settings(settings)
    organization_id = store.validate_organization_id(organization_id)
    currency = validate_reporting_currency(reporting_currency) if reporting_currency is not None else None
    normalized = [store.normalize_ad_account_id(a) for a in ad_accounts]
    expiry = _parse_expiry(expires_at)
    engine = _migrated_engine(settings)
    token = read_token_from_stdin()
    api = MetaApiSettings.from_env()
    if api.app_id and api.app_secret:
        info = MetaClient(token, api).debug_token()
        if not info.is_valid and info.expires_at is not None and info.expires_at <= db.utcnow():
            raise InvalidInputError(
                f"the token for organization {organization_id} expired on "
                f"{info.expires_at:%Y-%m-%d %H:%M} UTC (Meta's debug_token); create a new one and connect again"
            )
        if not info.is_valid:
            raise InvalidInputError(
                f"Meta says the token for organization {organization_id} is not valid (debug_token); "
                "create a new one and connect again"
            )
        expiry = expiry or info.expires_at
    if not normalized:
        normalized = [a.id for a in MetaClient(token, api).ad_accounts()]
        if not normalized:
            raise InvalidInputError(
                f"the token for organization {organization_id} cannot read any ad account (/me/adaccounts "
                "is empty); pass --ad-account act_<digits> or grant the token ads_read on the ad account"
            )
    with engine.begin() as conn:
        account_id = credentials.store_connection(conn, keyring, organization_id, provider, normalized, token, expiry)
        if currency is not None:
            store.set_reporting_currency(conn, organization_id, currency)
        reporting = store.reporting_currency(conn, organization_id)
    expiry_text = expiry.isoformat() if expiry else "never"
    click.echo(
        f"connected organization {organization_id} ({provider.upper()}, account {account_id}): "
        f"ad accounts {', '.join(normalized)}; token expires {expiry_text}; reporting currency {reporting}"
    )


@accounts_group.command("set-reporting-currency")
@click.option("--org", "organization_id", required=True, help="The organization's id in the product.")
@click.argument("currency")
def accounts_set_reporting_currency(organization_id: str, currency: str) -> None:
    """Change the currency an organization's ROAS is reported in (ISO 4217, e.g. EUR).

    The next ROAS run uses it. ROAS rows already computed keep the old currency until their days
    are computed again (`metaspend backfill` over them); `metaspend roas --currency reporting`
    refuses a range whose rows are in different currencies, naming the days.
    """
    from metaspend_pipeline.fx import validate_reporting_currency

    organization_id = store.validate_organization_id(organization_id)
    code = validate_reporting_currency(currency)
    engine = _migrated_engine(_settings())
    with engine.begin() as conn:
        if not store.list_accounts(conn, organization_id):
            raise UnknownOrganizationError(
                f"no connected account found for organization {organization_id}; see `metaspend accounts list`"
            )
        before = store.set_reporting_currency(conn, organization_id, code) or DEFAULT_REPORTING_CURRENCY
    if before == code:
        click.echo(f"organization {organization_id} already reports in {code}")
        return
    click.echo(
        f"organization {organization_id} now reports in {code} (was {before}); ROAS rows computed before keep "
        f"{before} until their days are computed again (metaspend backfill --from ... --to ... --org {organization_id})"
    )


@accounts_group.command("list")
@click.option("--org", "organization_id", default=None, help="Only this organization.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def accounts_list(organization_id: str | None, fmt: str) -> None:
    """List connected accounts (never their tokens)."""
    settings = _settings()
    if organization_id is not None:
        organization_id = store.validate_organization_id(organization_id)
    engine = _migrated_engine(settings)
    with engine.connect() as conn:
        summaries = store.list_accounts(conn, organization_id)
        reporting = store.reporting_currencies(conn, [s.organization_id for s in summaries])
    if organization_id is not None and not summaries:
        raise UnknownOrganizationError(
            f"no connected account found for organization {organization_id}; see `metaspend accounts list`"
        )
    if fmt == "json":
        click.echo(
            json.dumps(
                [
                    {
                        "id": s.id,
                        "organizationId": s.organization_id,
                        "provider": s.provider,
                        "status": s.status,
                        "adAccounts": list(s.ad_accounts),
                        "hasToken": s.has_token,
                        "tokenExpiresAt": s.token_expires_at.isoformat() if s.token_expires_at else None,
                        "lastRefreshedAt": s.last_refreshed_at.isoformat() if s.last_refreshed_at else None,
                        "reportingCurrency": reporting[s.organization_id],
                    }
                    for s in summaries
                ],
                indent=2,
            )
        )
        return
    if not summaries:
        click.echo("no connected accounts; add one with `metaspend accounts connect --org ORG`")
        return
    _print_table(
        ["organization", "provider", "status", "ad accounts", "token expires", "reporting currency"],
        [
            (
                s.organization_id,
                s.provider,
                s.status,
                ",".join(s.ad_accounts) or "-",
                (s.token_expires_at.isoformat(timespec="minutes") if s.token_expires_at else "never")
                if s.has_token
                else "no token",
                reporting[s.organization_id],
            )
            for s in summaries
        ],
    )


@accounts_group.command("disconnect")
@click.option("--org", "organization_id", required=True)
@click.option("--provider", type=click.Choice(["INSTAGRAM", "FACEBOOK"], case_sensitive=False), default=None)
def accounts_disconnect(organization_id: str, provider: str | None) -> None:
    """Mark an organization's accounts DISCONNECTED and delete their tokens (spend data stays)."""
    settings = _settings()
    organization_id = store.validate_organization_id(organization_id)
    engine = _migrated_engine(settings)
    with engine.begin() as conn:
        count = store.disconnect_organization(conn, organization_id, provider.upper() if provider else None)
    click.echo(f"disconnected {count} account(s) of organization {organization_id}; their tokens are deleted")


# --- report --------------------------------------------------------------------------------


def _parse_day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{option} {value!r} is not a date as YYYY-MM-DD") from None


@cli.command("roas")
@click.option("--org", "organization_id", required=True)
@click.option(
    "--group-by", "group", type=click.Choice(["campaign", "adset", "ad"]), default="campaign", show_default=True
)
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (the ad account's dates).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="json", show_default=True)
@click.option(
    "--currency",
    type=click.Choice(["account", "reporting"]),
    default="account",
    show_default=True,
    help="account: each ad account's own currency (mixed currencies give no ROAS); reporting: the "
    "organization's reporting currency, converted per day at the ECB's rates.",
)
def roas_command(organization_id: str, group: str, since: str, until: str, fmt: str, currency: str) -> None:
    """ROAS of an organization over a date range, summed from the daily ROAS tables."""
    from metaspend_pipeline import report

    organization_id = store.validate_organization_id(organization_id)
    first, last = _parse_day(since, "--from"), _parse_day(until, "--to")
    if first > last:
        raise InvalidInputError(f"--from {first} is after --to {last}")
    engine = _migrated_engine(_settings())
    with engine.connect() as conn:
        if not report.organization_known(conn, organization_id, group):
            raise UnknownOrganizationError(
                f"organization {organization_id} has no connected account and no ROAS rows; see `metaspend accounts list`"
            )
        missing = report.unloaded_days(conn, organization_id, first, last)
        total = (last - first).days + 1
        yesterday = db.utcnow().date() - dt.timedelta(days=1)  # the last day a backfill can load
        loadable = [d for d in missing if d <= yesterday]
        load = (
            f"load them with `metaspend backfill --from {loadable[0]} --to {loadable[-1]} --org {organization_id}`"
            if loadable
            else "they are not over yet"
        )
        if len(missing) == total:
            raise MetaspendError(
                f"nothing was loaded for organization {organization_id} from {first} to {last} (no fetch and no "
                f"spend on any day), so there is no ROAS to report; {load}"
            )
        if missing:
            click.echo(
                f"metaspend: warning: {len(missing)} of {total} day(s) were never loaded for organization "
                f"{organization_id}: {report.day_ranges(missing)}; their ROAS is missing, not 0; {load}",
                err=True,
            )
        items = report.roas_report(conn, organization_id, group, first, last, currency=currency)
    if fmt == "json":
        click.echo(report.to_json(items))
    elif fmt == "csv":
        click.echo(report.to_csv(items, group))
    else:
        headers, rows = report.to_rows(items, group)
        _print_table(headers, rows)


# --- backfill ------------------------------------------------------------------------------


@cli.command("backfill")
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (a partition: a UTC day).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive; at the latest yesterday.")
@click.option("--org", "organizations", multiple=True, help="Only this organization; repeat for several.")
@click.option("--wait", is_flag=True, help="Run it now in this process and wait, instead of submitting it.")
def backfill_command(since: str, until: str, organizations: tuple[str, ...], wait: bool) -> None:
    """Load a date range of spend and ROAS: a Dagster backfill the daemon runs, or with --wait, now.

    Either way it is one run of meta_spend_job's assets, recorded in the Dagster instance of
    DAGSTER_HOME (the UI shows it).
    """
    from metaspend_pipeline import backfill

    settings = _settings()
    first, last = _parse_day(since, "--from"), _parse_day(until, "--to")
    backfill.validate_range(first, last, settings.spend_start_date, db.utcnow().date())
    orgs = tuple(dict.fromkeys(store.validate_organization_id(o) for o in organizations))
    engine = _migrated_engine(settings)
    if orgs:
        with engine.connect() as conn:
            connected = set(store.connected_organizations(conn))
        unknown = [o for o in orgs if o not in connected]
        if unknown:
            raise UnknownOrganizationError(
                f"organization {', '.join(unknown)} has no CONNECTED Meta account; see `metaspend accounts list`"
            )
    request = backfill.BackfillRequest(first, last, orgs)
    with backfill.instance() as instance:
        if not wait:
            backfill_id = backfill.submit(instance, request)
            click.echo(
                f"submitted backfill {backfill_id}: {request.title()} ({request.days} day(s), one run); "
                "the Dagster daemon runs it, the UI shows it under Backfills"
            )
            return
        click.echo(f"{request.title()}: {request.days} day(s) in one run", err=True)
        ok, run_id = backfill.run_now(instance, request, lambda line: click.echo(line, err=True))
    with engine.connect() as conn:
        summary = backfill.summarize(conn, run_id, request)
    click.echo(f"run {run_id}: {'succeeded' if ok else 'FAILED'}")
    for line in summary.lines():
        click.echo(redact(line))
    if not ok:
        click.get_current_context().exit(1)


# --- sandbox ---------------------------------------------------------------------------------


@cli.group("sandbox")
def sandbox_group() -> None:
    """A local Meta Marketing API to build, test and demo against."""


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sandbox's data.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to every answer.")
@click.option("--rate-limit-calls", default=None, type=int, help="Calls per ad account per window before 80000.")
@click.option("--rate-limit-window", default=None, type=float, help="The rate-limit window, in seconds.")
@click.option("--app-rate-limit-calls", default=None, type=int, help="Calls of the whole app per window before code 4.")
@click.option("--app-rate-limit-window", default=None, type=float, help="The app-wide window, in seconds.")
@click.option("--require-appsecret-proof", is_flag=True, help="Refuse calls without a valid appsecret_proof.")
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
    bench_ads: int,
    bench_accounts: int,
    faults: tuple[str, ...],
) -> None:
    """Serve the sandbox until interrupted. META_APP_ID / META_APP_SECRET, when set, are its app."""
    from metaspend_pipeline.meta.sandbox.server import Sandbox, SandboxConfig, SandboxServer

    api = MetaApiSettings.from_env()
    config = SandboxConfig(latency_seconds=latency, require_appsecret_proof=require_appsecret_proof)
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
    from metaspend_pipeline.meta.sandbox.client import connect_sandbox_organizations

    settings = _settings()
    engine = _migrated_engine(settings)
    url = url or MetaApiSettings.from_env().graph_api_url
    connected = connect_sandbox_organizations(engine, KeyRing.from_settings(settings), url)
    for organization_id, ad_accounts in connected.items():
        click.echo(f"connected {organization_id}: {', '.join(ad_accounts)}")


@cli.command("demo")
def demo_command() -> None:
    """Set up the embedded default and run the demo (the README's quick start)."""
    from metaspend_pipeline import demo

    demo.run(echo=click.echo)


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: any bad input, the parser's included, is one line and exit code 2."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = cli.main(args=args, prog_name="metaspend", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"metaspend: error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"metaspend: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("metaspend: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
