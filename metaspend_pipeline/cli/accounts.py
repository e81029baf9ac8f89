"""`metaspend accounts`: organizations' connected Meta accounts. Tokens are read from standard input,
never from arguments, and never printed."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys

import click

from metaspend_pipeline import credentials
from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine, print_table
from metaspend_pipeline.errors import InvalidInputError, UnknownOrganizationError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaApiError
from metaspend_pipeline.meta.models import AdAccount
from metaspend_pipeline.settings import MetaApiSettings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage.schema import DEFAULT_REPORTING_CURRENCY
from metaspend_pipeline.tokens import KeyRing


def parse_expiry(value: str | None) -> dt.datetime | None:
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
    help="The currency ROAS is also reported in (ISO 4217, e.g. EUR). Default: the currency of the ad accounts "
    f"when they all share one, {DEFAULT_REPORTING_CURRENCY} when they are mixed; the organization's current one "
    "when it is reconnected.",
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

    settings = load_settings()
    keyring = KeyRing.from_settings(settings)
    organization_id = store.validate_organization_id(organization_id)
    currency = validate_reporting_currency(reporting_currency) if reporting_currency is not None else None
    normalized = [store.normalize_ad_account_id(a) for a in ad_accounts]
    expiry = parse_expiry(expires_at)
    credentials.validate_expiry(expiry)  # before anything is asked of Meta
    engine = migrated_engine(settings)
    token = read_token_from_stdin()
    api = MetaApiSettings.from_env()
    client = MetaClient(token, api)
    if api.app_id and api.app_secret:
        info = client.debug_token()
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
    discovered: list[AdAccount] = []
    if not normalized:
        discovered = client.ad_accounts()
        normalized = [a.id for a in discovered]
        if not normalized:
            raise InvalidInputError(
                f"the token for organization {organization_id} cannot read any ad account (/me/adaccounts "
                "is empty); pass --ad-account act_<digits> or grant the token ads_read on the ad account"
            )
    with engine.connect() as conn:
        first_setting = currency is None and store.stored_reporting_currency(conn, organization_id) is None
    why = ""
    if first_setting:
        currency, why = _default_reporting_currency(client, normalized, discovered)
    with engine.begin() as conn:
        account_id = credentials.store_connection(conn, keyring, organization_id, provider, normalized, token, expiry)
        if currency is not None:
            store.set_reporting_currency(conn, organization_id, currency)
        reporting = store.reporting_currency(conn, organization_id)
    expiry_text = expiry.isoformat() if expiry else "never"
    click.echo(
        f"connected organization {organization_id} ({provider.upper()}, account {account_id}): "
        f"ad accounts {', '.join(normalized)}; token expires {expiry_text}; reporting currency {reporting}"
        + (f" ({why})" if why else "")
    )
    for text in client.stats.version_warnings:
        click.echo(f"metaspend: warning: Meta warns about Marketing API {api.api_version}: {text}", err=True)


def _default_reporting_currency(
    client: MetaClient, ad_accounts: list[str], discovered: list[AdAccount]
) -> tuple[str | None, str]:
    """A new organization's reporting currency from its ad accounts' currencies as Meta gives them
    (`fx.default_reporting_currency`), and why; (None, why) when Meta cannot tell, so that a later
    connection may still set it."""
    from metaspend_pipeline.fx import default_reporting_currency

    try:
        currencies = [a.currency for a in discovered] or [client.ad_account(a).currency for a in ad_accounts]
    except MetaApiError as exc:
        return None, (
            f"the default: the ad accounts' currencies could not be read from Meta ({exc}); set it with "
            "`metaspend accounts set-reporting-currency`"
        )
    return default_reporting_currency(currencies)


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
    engine = migrated_engine(load_settings())
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
    settings = load_settings()
    if organization_id is not None:
        organization_id = store.validate_organization_id(organization_id)
    engine = migrated_engine(settings)
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
    print_table(
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
    settings = load_settings()
    organization_id = store.validate_organization_id(organization_id)
    engine = migrated_engine(settings)
    with engine.begin() as conn:
        count = store.disconnect_organization(conn, organization_id, provider.upper() if provider else None)
    click.echo(f"disconnected {count} account(s) of organization {organization_id}; their tokens are deleted")
