"""Which token reads which ad account: the product's lookup rule.

For an organization: the most recent non-expired token of a CONNECTED account with provider
INSTAGRAM or FACEBOOK; when several of its accounts list the same ad account, the most recent
token wins. Only when METASPEND_ENV=development, and only when no stored token qualifies, the
environment fallback META_PAGE_ACCESS_TOKEN + META_AD_ACCOUNT_ID is used, with a warning.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from metaspend_pipeline.errors import InvalidInputError, NoAdAccountError, NoValidTokenError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.redaction import get_logger, register_secret
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.tokens import KeyRing

log = get_logger(__name__)

FALLBACK_PROVIDER = "INSTAGRAM"


@dataclass(frozen=True)
class AdAccountCredential:
    """One ad account and the token that reads it. `repr` never shows the token."""

    organization_id: str
    ad_account_id: str
    provider: str
    connected_account_id: str | None
    token_id: str | None
    access_token: str = field(repr=False)

    @property
    def from_environment(self) -> bool:
        return self.connected_account_id is None


@dataclass(frozen=True)
class MetaAdAccount:
    """An ad account of an organization, with a client that holds the token that reads it."""

    organization_id: str
    ad_account_id: str
    provider: str
    connected_account_id: str | None
    client: MetaClient = field(repr=False, compare=False)


def _no_token_message(organization_id: str, reason: str) -> str:
    return (
        f"No valid access token found for organization {organization_id} ({reason}). "
        "Connect the account with `metaspend accounts connect --org "
        f"{organization_id}` (the token is read from standard input), or check that its status "
        "is CONNECTED and its token has not expired with `metaspend accounts list`; in "
        "development set METASPEND_ENV=development with META_PAGE_ACCESS_TOKEN and META_AD_ACCOUNT_ID."
    )


def select_tokens(tokens: list[store.StoredToken], now: dt.datetime) -> list[store.StoredToken]:
    """The tokens that may be used, most recent first (the product's rule, minus decryption)."""
    usable = [
        t for t in tokens if t.status == "CONNECTED" and t.provider in ("INSTAGRAM", "FACEBOOK") and t.is_valid_at(now)
    ]
    return sorted(usable, key=lambda t: t.recency, reverse=True)


def ad_account_credentials(
    conn: sa.Connection,
    keyring: KeyRing | None,
    organization_id: str,
    settings: Settings,
    now: dt.datetime | None = None,
) -> list[AdAccountCredential]:
    """Every ad account of the organization with a decrypted token to read it."""
    now = now or utcnow()
    candidates = store.stored_tokens(conn, organization_id)
    chosen = select_tokens(candidates, now)
    if chosen:
        if keyring is None:
            keyring = KeyRing.from_settings(settings)
        credentials: dict[str, AdAccountCredential] = {}
        for token in chosen:
            plain: str | None = None
            for ad_account in token.ad_accounts:
                if ad_account in credentials:
                    continue
                plain = plain or keyring.decrypt(token.access_token_encrypted, token.connected_account_id)
                credentials[ad_account] = AdAccountCredential(
                    organization_id=organization_id,
                    ad_account_id=ad_account,
                    provider=token.provider,
                    connected_account_id=token.connected_account_id,
                    token_id=token.token_id,
                    access_token=plain,
                )
        if not credentials:
            raise NoAdAccountError(
                f"No ad account ID found for organization {organization_id}: its connected accounts "
                f"list none. Reconnect with `metaspend accounts connect --org {organization_id} "
                "--ad-account act_...`."
            )
        return list(credentials.values())

    if settings.is_development and settings.page_access_token and settings.fallback_ad_account_id:
        log.warning(
            "organization %s has no valid stored token; using the development fallback "
            "META_PAGE_ACCESS_TOKEN for ad account %s",
            organization_id,
            settings.fallback_ad_account_id,
        )
        register_secret(settings.page_access_token)
        return [
            AdAccountCredential(
                organization_id=organization_id,
                ad_account_id=store.normalize_ad_account_id(settings.fallback_ad_account_id),
                provider=FALLBACK_PROVIDER,
                connected_account_id=None,
                token_id=None,
                access_token=settings.page_access_token,
            )
        ]

    expired: tuple[str, ...] = ()
    if not candidates:
        reason = "it has no stored token"
    elif not any(t.status == "CONNECTED" for t in candidates):
        reason = "its accounts are " + ", ".join(sorted({t.status for t in candidates}))
    else:
        reason = "every stored token has expired"
        expired = tuple(sorted({t.connected_account_id for t in candidates if t.status == "CONNECTED"}))
    raise NoValidTokenError(_no_token_message(organization_id, reason), expired_accounts=expired)


def validate_expiry(expires_at: dt.datetime | None) -> None:
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInputError(f"the token's expiry {expires_at.isoformat()} is in the past")


def store_connection(
    conn: sa.Connection,
    keyring: KeyRing,
    organization_id: str,
    provider: str,
    ad_accounts: list[str],
    access_token: str,
    expires_at: dt.datetime | None,
) -> str:
    """Connect (or reconnect) an organization's account with a new token; returns the account id."""
    organization_id = store.validate_organization_id(organization_id)
    provider = store.validate_provider(provider)
    ad_accounts = list(dict.fromkeys(store.normalize_ad_account_id(a) for a in ad_accounts))
    if not access_token or not access_token.strip():
        raise InvalidInputError("the access token read from standard input is empty")
    register_secret(access_token.strip())
    validate_expiry(expires_at)
    account_id = store.upsert_account(conn, organization_id, provider, ad_accounts)
    encrypted = keyring.encrypt(access_token.strip(), account_id)
    store.replace_token(conn, account_id, encrypted, expires_at)
    return account_id


@dataclass(frozen=True)
class RotationReport:
    reencrypted: int
    already_current: int


def rotate_keys(conn: sa.Connection, keyring: KeyRing) -> RotationReport:
    """Re-encrypt every stored token with the current key, inside the caller's transaction.

    Any token that cannot be decrypted raises (naming its account) before the caller commits,
    so a failed rotation leaves every row as it was. The rows are locked when read: a token
    refresh committing meanwhile waits for the rotation, instead of being overwritten with the
    old token.
    """
    reencrypted = current = 0
    for token in store.stored_tokens(conn, for_update=True):
        plain = keyring.decrypt(token.access_token_encrypted, token.connected_account_id)
        if not keyring.needs_rotation(token.access_token_encrypted):
            current += 1
            continue
        store.update_token(
            conn,
            token.token_id,
            keyring.encrypt(plain, token.connected_account_id),
            token.expires_at,
            refreshed=False,
        )
        reencrypted += 1
    return RotationReport(reencrypted=reencrypted, already_current=current)
