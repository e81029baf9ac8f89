from __future__ import annotations

import datetime as dt
import logging

import pytest
import sqlalchemy as sa

from metaspend_pipeline import credentials
from metaspend_pipeline.errors import InvalidInputError, NoAdAccountError, NoValidTokenError
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import oauth_token
from metaspend_pipeline.tokens import KeyRing, TokenDecryptionError

NOW = utcnow()


def settings(key: str, **env: str) -> Settings:
    return Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": key, **env})


def connect(
    engine: sa.Engine,
    key: str,
    org: str,
    token: str,
    ad_accounts: list[str],
    provider: str = "INSTAGRAM",
    expires_at: dt.datetime | None = None,
) -> str:
    with engine.begin() as conn:
        return credentials.store_connection(
            conn, KeyRing.from_settings(settings(key)), org, provider, ad_accounts, token, expires_at
        )


def lookup(engine: sa.Engine, key: str, org: str, **env: str) -> list[credentials.AdAccountCredential]:
    with engine.connect() as conn:
        return credentials.ad_account_credentials(conn, None, org, settings(key, **env))


def test_each_ad_account_gets_the_decrypted_token(engine: sa.Engine, encryption_key: str, fake_token: str) -> None:
    account_id = connect(engine, encryption_key, "org-1", fake_token, ["act_1", "act_2"])
    creds = lookup(engine, encryption_key, "org-1")
    assert [(c.ad_account_id, c.connected_account_id, c.access_token) for c in creds] == [
        ("act_1", account_id, fake_token),
        ("act_2", account_id, fake_token),
    ]
    assert fake_token not in repr(creds)


def test_most_recent_valid_token_wins_for_a_shared_ad_account(engine: sa.Engine, encryption_key: str) -> None:
    connect(engine, encryption_key, "org-1", "EAAolder000000", ["act_1"], provider="FACEBOOK")
    newer = connect(engine, encryption_key, "org-1", "EAAnewer000000", ["act_1", "act_2"])
    creds = {c.ad_account_id: c for c in lookup(engine, encryption_key, "org-1")}
    assert creds["act_1"].access_token == "EAAnewer000000"
    assert creds["act_1"].connected_account_id == newer


def test_expired_tokens_and_accounts_needing_reauth_are_skipped(engine: sa.Engine, encryption_key: str) -> None:
    expired = connect(
        engine,
        encryption_key,
        "org-1",
        "EAAexpired0000",
        ["act_1"],
        provider="FACEBOOK",
        expires_at=NOW + dt.timedelta(days=1),
    )
    with engine.begin() as conn:
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == expired)
            .values(expires_at=NOW - dt.timedelta(minutes=1))
        )
    reauth = connect(engine, encryption_key, "org-1", "EAAreauth00000", ["act_1"])
    with engine.begin() as conn:
        store.set_status(conn, reauth, "NEEDS_REAUTH")
    with pytest.raises(NoValidTokenError, match="No valid access token found for organization org-1"):
        lookup(engine, encryption_key, "org-1")


def test_organizations_do_not_share_tokens(engine: sa.Engine, encryption_key: str) -> None:
    connect(engine, encryption_key, "org-1", "EAAorgone00000", ["act_1"])
    with pytest.raises(NoValidTokenError, match="organization org-2 .*no stored token"):
        lookup(engine, encryption_key, "org-2")


def test_environment_fallback_only_in_development(
    engine: sa.Engine, encryption_key: str, fake_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = {"META_PAGE_ACCESS_TOKEN": fake_token, "META_AD_ACCOUNT_ID": "act_777"}
    with pytest.raises(NoValidTokenError):
        lookup(engine, encryption_key, "org-1", **fallback)
    with pytest.raises(NoValidTokenError):
        lookup(engine, encryption_key, "org-1", METASPEND_ENV="production", **fallback)
    with caplog.at_level(logging.WARNING):
        creds = lookup(engine, encryption_key, "org-1", METASPEND_ENV="development", **fallback)
    assert [(c.ad_account_id, c.access_token, c.from_environment) for c in creds] == [("act_777", fake_token, True)]
    assert "development fallback" in caplog.text
    assert fake_token not in caplog.text


def test_stored_token_beats_the_fallback_in_development(engine: sa.Engine, encryption_key: str) -> None:
    connect(engine, encryption_key, "org-1", "EAAstored00000", ["act_1"])
    creds = lookup(
        engine,
        encryption_key,
        "org-1",
        METASPEND_ENV="development",
        META_PAGE_ACCESS_TOKEN="EAAenv00000000",
        META_AD_ACCOUNT_ID="act_9",
    )
    assert [c.access_token for c in creds] == ["EAAstored00000"]


def test_token_without_ad_accounts_is_a_clear_error(engine: sa.Engine, encryption_key: str) -> None:
    connect(engine, encryption_key, "org-1", "EAAnoaccounts0", [])
    with pytest.raises(NoAdAccountError, match="No ad account ID found for organization org-1"):
        lookup(engine, encryption_key, "org-1")


@pytest.mark.parametrize(
    ("org", "ad_accounts", "token", "message"),
    [
        ("org 1", ["act_1"], "EAAx0000000000", "organization id 'org 1' is not valid"),
        ("org-1", ["act_x1"], "EAAx0000000000", "ad account id 'act_x1' is malformed"),
        ("org-1", ["act_1"], "   ", "token read from standard input is empty"),
    ],
)
def test_bad_connection_input_writes_nothing(
    engine: sa.Engine, encryption_key: str, org: str, ad_accounts: list[str], token: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        connect(engine, encryption_key, org, token, ad_accounts)
    with engine.connect() as conn:
        assert store.list_accounts(conn) == []


def test_rotation_reencrypts_every_token_in_one_transaction(engine: sa.Engine) -> None:
    from metaspend_pipeline.tokens import generate_key

    old, new = generate_key(), generate_key()
    connect(engine, old, "org-1", "EAAone00000000", ["act_1"])
    connect(engine, old, "org-2", "EAAtwo00000000", ["act_2"])
    rotated = KeyRing.from_settings(
        Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": new, "META_TOKEN_ENCRYPTION_OLD_KEYS": old})
    )
    with engine.begin() as conn:
        report = credentials.rotate_keys(conn, rotated)
    assert (report.reencrypted, report.already_current) == (2, 0)
    assert {c.access_token for org in ("org-1", "org-2") for c in lookup(engine, new, org)} == {
        "EAAone00000000",
        "EAAtwo00000000",
    }
    with engine.connect() as conn:
        assert not any(rotated.needs_rotation(t.access_token_encrypted) for t in store.stored_tokens(conn))


def test_tampered_or_moved_ciphertext_in_the_database_fails_naming_the_account(
    engine: sa.Engine, encryption_key: str, fake_token: str
) -> None:
    first = connect(engine, encryption_key, "org-1", fake_token, ["act_1"])
    second = connect(engine, encryption_key, "org-2", "EAAsecond000000", ["act_2"])
    with engine.begin() as conn:
        stored = conn.execute(
            sa.select(oauth_token.c.access_token_encrypted).where(oauth_token.c.connected_account_id == first)
        ).scalar_one()
        # org-1's ciphertext copied onto org-2's row
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == second)
            .values(access_token_encrypted=stored)
        )
    with pytest.raises(TokenDecryptionError, match=f"connected account {second} failed authentication") as info:
        lookup(engine, encryption_key, "org-2")
    assert fake_token not in str(info.value)

    version, kid, nonce, sealed = stored.split(":")
    flipped = ("B" if sealed[0] != "B" else "C") + sealed[1:]
    with engine.begin() as conn:
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == first)
            .values(access_token_encrypted=":".join([version, kid, nonce, flipped]))
        )
    with pytest.raises(TokenDecryptionError, match=f"connected account {first} failed authentication"):
        lookup(engine, encryption_key, "org-1")
