"""Connected accounts and their encrypted tokens: the queries, nothing else.

Functions take a connection inside the caller's transaction, so that a command that changes
several rows either changes all of them or none.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from metaspend_pipeline.currency import CURRENCY_CODE
from metaspend_pipeline.errors import InvalidInputError, UnknownOrganizationError
from metaspend_pipeline.storage.db import is_postgres, utcnow
from metaspend_pipeline.storage.schema import (
    DEFAULT_REPORTING_CURRENCY,
    PROVIDERS,
    connected_account,
    connected_ad_account,
    oauth_token,
    organization_setting,
)

AD_ACCOUNT_ID = re.compile(r"^act_[0-9]{1,30}$", re.ASCII)
ACCOUNT_DIGITS = re.compile(r"[0-9]{1,30}", re.ASCII)
ORGANIZATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,199}$")


def new_id() -> str:
    return uuid.uuid4().hex


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without a zone."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def validate_organization_id(organization_id: str) -> str:
    org = (organization_id or "").strip()
    if not ORGANIZATION_ID.match(org):
        raise InvalidInputError(
            f"organization id {organization_id!r} is not valid: use 1-200 letters, digits or . _ : @ -"
        )
    return org


def normalize_ad_account_id(value: str) -> str:
    """`act_<digits>`; bare digits (as Meta's `account_id` field gives them) get the prefix."""
    text = (value or "").strip()
    if ACCOUNT_DIGITS.fullmatch(text):  # not str.isdigit(): it accepts "²" and non-ASCII digits
        text = f"act_{text}"
    if not AD_ACCOUNT_ID.match(text):
        raise InvalidInputError(f"ad account id {value!r} is malformed: expected act_<digits>, e.g. act_123456789")
    return text


def validate_provider(provider: str) -> str:
    value = (provider or "").strip().upper()
    if value not in PROVIDERS:
        raise InvalidInputError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    return value


@dataclass(frozen=True)
class AccountSummary:
    """What `metaspend accounts list` shows: never the token."""

    id: str
    organization_id: str
    provider: str
    status: str
    ad_accounts: tuple[str, ...]
    token_expires_at: dt.datetime | None
    has_token: bool
    last_refreshed_at: dt.datetime | None


@dataclass(frozen=True)
class StoredToken:
    """An encrypted token and the account it belongs to, as read from the database."""

    token_id: str
    connected_account_id: str
    organization_id: str
    provider: str
    status: str
    ad_accounts: tuple[str, ...]
    access_token_encrypted: str
    token_type: str | None
    expires_at: dt.datetime | None
    last_refreshed_at: dt.datetime | None
    created_at: dt.datetime

    @property
    def recency(self) -> dt.datetime:
        return max(filter(None, (self.created_at, self.last_refreshed_at)))

    def is_valid_at(self, now: dt.datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


def find_account(conn: sa.Connection, organization_id: str, provider: str) -> sa.Row | None:
    return conn.execute(
        sa.select(connected_account)
        .where(connected_account.c.organization_id == organization_id)
        .where(connected_account.c.provider == provider)
        .order_by(connected_account.c.created_at)
        .limit(1)
    ).first()


def upsert_account(
    conn: sa.Connection,
    organization_id: str,
    provider: str,
    ad_accounts: Sequence[str],
) -> str:
    """Create or reconnect the organization's account for `provider`; returns its id. Ad accounts
    connected to the organization for the first time are recorded with the time (`connected_ad_account`)."""
    now = utcnow()
    record_first_connection(conn, organization_id, ad_accounts, now)
    existing = find_account(conn, organization_id, provider)
    if existing is None:
        account_id = new_id()
        conn.execute(
            connected_account.insert().values(
                id=account_id,
                organization_id=organization_id,
                provider=provider,
                status="CONNECTED",
                ad_accounts=list(ad_accounts),
                created_at=now,
                updated_at=now,
            )
        )
        return account_id
    conn.execute(
        connected_account.update()
        .where(connected_account.c.id == existing.id)
        .values(status="CONNECTED", ad_accounts=list(ad_accounts), updated_at=now)
    )
    return existing.id


def record_first_connection(
    conn: sa.Connection, organization_id: str, ad_accounts: Sequence[str], now: dt.datetime
) -> None:
    """`now` as the first connection of each ad account the organization never had; others keep theirs."""
    if not ad_accounts:
        return
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    rows = [{"organization_id": organization_id, "ad_account_id": a, "first_connected_at": now} for a in ad_accounts]
    conn.execute(insert(connected_ad_account).values(rows).on_conflict_do_nothing())


def first_connections(
    conn: sa.Connection, organization_ids: Iterable[str] | None = None
) -> dict[tuple[str, str], dt.datetime]:
    """(organization, ad account) -> when the ad account was first connected to the organization (UTC)."""
    t = connected_ad_account
    query = sa.select(t.c.organization_id, t.c.ad_account_id, t.c.first_connected_at)
    if organization_ids is not None:
        query = query.where(t.c.organization_id.in_(list(organization_ids)))
    return {(o, a): as_utc(at) for o, a, at in conn.execute(query)}  # type: ignore[misc]


def replace_token(
    conn: sa.Connection,
    connected_account_id: str,
    access_token_encrypted: str,
    expires_at: dt.datetime | None,
    token_type: str | None = "bearer",  # noqa: S107 - a token type, not a secret
) -> str:
    """Store a new token for the account, removing the ones it replaces."""
    now = utcnow()
    conn.execute(oauth_token.delete().where(oauth_token.c.connected_account_id == connected_account_id))
    token_id = new_id()
    conn.execute(
        oauth_token.insert().values(
            id=token_id,
            connected_account_id=connected_account_id,
            access_token_encrypted=access_token_encrypted,
            token_type=token_type,
            expires_at=expires_at,
            last_refreshed_at=None,
            created_at=now,
            updated_at=now,
        )
    )
    return token_id


def update_token(
    conn: sa.Connection,
    token_id: str,
    access_token_encrypted: str,
    expires_at: dt.datetime | None,
    refreshed: bool,
) -> None:
    now = utcnow()
    values: dict[str, object] = {
        "access_token_encrypted": access_token_encrypted,
        "expires_at": expires_at,
        "updated_at": now,
    }
    if refreshed:
        values["last_refreshed_at"] = now
    conn.execute(oauth_token.update().where(oauth_token.c.id == token_id).values(**values))


def set_status(conn: sa.Connection, connected_account_id: str, status: str) -> None:
    conn.execute(
        connected_account.update()
        .where(connected_account.c.id == connected_account_id)
        .values(status=status, updated_at=utcnow())
    )


def disconnect_organization(conn: sa.Connection, organization_id: str, provider: str | None = None) -> int:
    """Mark the organization's accounts DISCONNECTED and delete their tokens; spend data stays."""
    query = sa.select(connected_account.c.id).where(connected_account.c.organization_id == organization_id)
    if provider:
        query = query.where(connected_account.c.provider == provider)
    ids = list(conn.execute(query).scalars())
    if not ids:
        what = f"organization {organization_id}" + (f" with provider {provider}" if provider else "")
        raise UnknownOrganizationError(f"no connected account found for {what}; see `metaspend accounts list`")
    conn.execute(oauth_token.delete().where(oauth_token.c.connected_account_id.in_(ids)))
    conn.execute(
        connected_account.update()
        .where(connected_account.c.id.in_(ids))
        .values(status="DISCONNECTED", updated_at=utcnow())
    )
    return len(ids)


def list_accounts(conn: sa.Connection, organization_id: str | None = None) -> list[AccountSummary]:
    latest = (
        sa.select(
            oauth_token.c.connected_account_id,
            sa.func.max(oauth_token.c.expires_at).label("expires_at"),
            sa.func.count().label("tokens"),
            sa.func.max(oauth_token.c.last_refreshed_at).label("last_refreshed_at"),
            sa.func.sum(sa.case((oauth_token.c.expires_at.is_(None), 1), else_=0)).label("never_expiring"),
        )
        .group_by(oauth_token.c.connected_account_id)
        .subquery()
    )
    query = (
        sa.select(
            connected_account,
            latest.c.expires_at,
            latest.c.tokens,
            latest.c.never_expiring,
            latest.c.last_refreshed_at,
        )
        .outerjoin(latest, latest.c.connected_account_id == connected_account.c.id)
        .order_by(connected_account.c.organization_id, connected_account.c.provider)
    )
    if organization_id:
        query = query.where(connected_account.c.organization_id == organization_id)
    out = []
    for row in conn.execute(query):
        has_token = bool(row.tokens)
        out.append(
            AccountSummary(
                id=row.id,
                organization_id=row.organization_id,
                provider=row.provider,
                status=row.status,
                ad_accounts=tuple(row.ad_accounts or ()),
                token_expires_at=None if row.never_expiring else as_utc(row.expires_at),
                has_token=has_token,
                last_refreshed_at=as_utc(row.last_refreshed_at),
            )
        )
    return out


def stored_tokens(
    conn: sa.Connection,
    organization_id: str | None = None,
    statuses: Iterable[str] | None = None,
    *,
    for_update: bool = False,
) -> list[StoredToken]:
    """Every stored token with its account, optionally for one organization and some statuses.

    `for_update` locks the token rows until the caller's transaction ends (SELECT ... FOR UPDATE
    OF oauth_token on PostgreSQL), so a writer that rewrites them cannot overwrite a token another
    transaction stored in between. SQLite needs no lock: BEGIN IMMEDIATE (storage.db) already lets
    one writer in at a time.
    """
    query = sa.select(
        oauth_token.c.id.label("token_id"),
        oauth_token.c.connected_account_id,
        oauth_token.c.access_token_encrypted,
        oauth_token.c.token_type,
        oauth_token.c.expires_at,
        oauth_token.c.last_refreshed_at,
        oauth_token.c.created_at,
        connected_account.c.organization_id,
        connected_account.c.provider,
        connected_account.c.status,
        connected_account.c.ad_accounts,
    ).join(connected_account, connected_account.c.id == oauth_token.c.connected_account_id)
    if organization_id is not None:
        query = query.where(connected_account.c.organization_id == organization_id)
    if statuses is not None:
        query = query.where(connected_account.c.status.in_(list(statuses)))
    query = query.order_by(connected_account.c.organization_id, oauth_token.c.id)
    if for_update:
        query = query.with_for_update(of=oauth_token)
    return [
        StoredToken(
            token_id=row.token_id,
            connected_account_id=row.connected_account_id,
            organization_id=row.organization_id,
            provider=row.provider,
            status=row.status,
            ad_accounts=tuple(row.ad_accounts or ()),
            access_token_encrypted=row.access_token_encrypted,
            token_type=row.token_type,
            expires_at=as_utc(row.expires_at),
            last_refreshed_at=as_utc(row.last_refreshed_at),
            created_at=as_utc(row.created_at),
        )
        for row in conn.execute(query)
    ]


def connected_organizations(conn: sa.Connection) -> list[str]:
    """Organizations with a Meta account that is CONNECTED, or NEEDS_REAUTH: those are still
    expected to deliver spend, so every run fails on them (naming them) until someone reconnects
    or disconnects them, instead of dropping them in silence."""
    return list(
        conn.execute(
            sa.select(connected_account.c.organization_id)
            .where(connected_account.c.status.in_(["CONNECTED", "NEEDS_REAUTH"]))
            .where(connected_account.c.provider.in_(PROVIDERS))
            .distinct()
            .order_by(connected_account.c.organization_id)
        ).scalars()
    )


# --- the organization's reporting currency ------------------------------------------------------


def validate_currency(value: str, what: str = "currency") -> str:
    """An ISO 4217 code in capitals (`eur` reads as EUR)."""
    code = (value or "").strip().upper()
    if not CURRENCY_CODE.fullmatch(code):
        raise InvalidInputError(f"{what} {value!r} is not an ISO 4217 currency code such as USD, EUR or BRL")
    return code


def set_reporting_currency(conn: sa.Connection, organization_id: str, currency: str) -> str | None:
    """Set the organization's reporting currency; returns the one it had (None: it had no setting)."""
    t = organization_setting
    before = stored_reporting_currency(conn, organization_id)
    now = utcnow()
    if before is None:
        conn.execute(
            t.insert().values(
                organization_id=organization_id, reporting_currency=currency, created_at=now, updated_at=now
            )
        )
    elif before != currency:
        conn.execute(
            t.update().where(t.c.organization_id == organization_id).values(reporting_currency=currency, updated_at=now)
        )
    return before


def stored_reporting_currency(conn: sa.Connection, organization_id: str) -> str | None:
    """The organization's own setting; None when it has none (and reports in the default)."""
    t = organization_setting
    return conn.execute(sa.select(t.c.reporting_currency).where(t.c.organization_id == organization_id)).scalar()


def reporting_currencies(conn: sa.Connection, organization_ids: Iterable[str]) -> dict[str, str]:
    """Each organization's reporting currency; DEFAULT_REPORTING_CURRENCY (USD) for one without a setting."""
    wanted = list(dict.fromkeys(organization_ids))
    t = organization_setting
    query = sa.select(t.c.organization_id, t.c.reporting_currency).where(t.c.organization_id.in_(wanted))
    found = {organization_id: currency for organization_id, currency in conn.execute(query)}
    return {o: found.get(o, DEFAULT_REPORTING_CURRENCY) for o in wanted}


def reporting_currency(conn: sa.Connection, organization_id: str) -> str:
    return reporting_currencies(conn, [organization_id])[organization_id]
