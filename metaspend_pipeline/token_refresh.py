"""Extending Meta tokens before they expire: plain Python under `meta_token_refresh_job`.

Every token of a CONNECTED account that expires within `within_days` (default 7) is exchanged
with `fb_exchange_token` for a new long-lived one, re-encrypted and stored with its new expiry.
A token Meta rejects marks its account NEEDS_REAUTH; a token without expiry is left alone.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.meta.client import MetaClient
from metaspend_pipeline.meta.errors import MetaTokenError
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.tokens import KeyRing

EXTENDED, SKIPPED, FAILED, NEEDS_REAUTH = "EXTENDED", "SKIPPED", "FAILED", "NEEDS_REAUTH"


@dataclass(frozen=True)
class RefreshOutcome:
    organization_id: str
    connected_account_id: str
    provider: str
    status: str
    detail: str
    expires_at: dt.datetime | None

    def __str__(self) -> str:
        return (
            f"organization {self.organization_id} ({self.provider}, account {self.connected_account_id}): "
            f"{self.status.lower().replace('_', ' ')}, {self.detail}"
        )


def _outcome(
    token: store.StoredToken, status: str, detail: str, expires_at: dt.datetime | None = None
) -> RefreshOutcome:
    return RefreshOutcome(
        token.organization_id,
        token.connected_account_id,
        token.provider,
        status,
        detail,
        expires_at if status == EXTENDED else token.expires_at,
    )


def refresh_tokens(
    engine: sa.Engine,
    keyring: KeyRing,
    client_for: Callable[[str], MetaClient],
    now: dt.datetime,
    within_days: int = 7,
) -> list[RefreshOutcome]:
    """Extend what needs extending; one outcome per stored token, never a token in it."""
    horizon = now + dt.timedelta(days=within_days)
    with engine.connect() as conn:
        tokens = store.stored_tokens(conn)
    outcomes = []
    for token in tokens:
        outcome = functools.partial(_outcome, token)
        if token.status != "CONNECTED":
            outcomes.append(outcome(SKIPPED, f"account is {token.status}"))
            continue
        if token.expires_at is None:
            outcomes.append(outcome(SKIPPED, "token never expires"))
            continue
        if token.expires_at > horizon:
            outcomes.append(
                outcome(SKIPPED, f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC, after {horizon:%Y-%m-%d}")
            )
            continue
        try:
            plain = keyring.decrypt(token.access_token_encrypted, token.connected_account_id)
            extended = client_for(plain).exchange_token(now=now)
        except MetaTokenError as exc:
            with engine.begin() as conn:
                store.set_status(conn, token.connected_account_id, "NEEDS_REAUTH")
            outcomes.append(outcome(NEEDS_REAUTH, f"Meta rejected the token ({redact(exc)}); reconnect the account"))
            continue
        except MetaspendError as exc:
            outcomes.append(outcome(FAILED, redact(exc)))
            continue
        with engine.begin() as conn:
            store.update_token(
                conn,
                token.token_id,
                keyring.encrypt(extended.access_token, token.connected_account_id),
                extended.expires_at,
                refreshed=True,
            )
        until = f"{extended.expires_at:%Y-%m-%d %H:%M} UTC" if extended.expires_at else "no expiry"
        outcomes.append(outcome(EXTENDED, f"new token valid until {until}", extended.expires_at))
    return outcomes
