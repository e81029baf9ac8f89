"""`credentials.py`: storing, finding and rotating the organizations' tokens, and a token that expires
at the very instant it is stored (already expired: the lookup rule is `expires_at > now`)."""

from __future__ import annotations

import dataclasses
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


# --- exact rules of the lookup (mutation testing, docs/development.md) -------------------------------


def _no_token(org: str, reason: str) -> str:
    return (
        f"No valid access token found for organization {org} ({reason}). "
        f"Connect the account with `metaspend accounts connect --org {org}` (the token is read from standard "
        "input), or check that its status is CONNECTED and its token has not expired with `metaspend accounts "
        "list`; in development set METASPEND_ENV=development with META_PAGE_ACCESS_TOKEN and META_AD_ACCOUNT_ID."
    )


def _expire(engine: sa.Engine, account: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == account)
            .values(expires_at=NOW - dt.timedelta(minutes=1))
        )


def test_why_no_token_qualifies_is_said_in_full(engine: sa.Engine, encryption_key: str) -> None:
    with pytest.raises(NoValidTokenError) as info:
        lookup(engine, encryption_key, "org-1")
    assert (str(info.value), info.value.expired_accounts) == (_no_token("org-1", "it has no stored token"), ())

    reauth = connect(engine, encryption_key, "org-1", "EAAreauth00000", ["act_1"])
    other = connect(engine, encryption_key, "org-1", "EAAother00000", ["act_2"], provider="FACEBOOK")
    with engine.begin() as conn:
        store.set_status(conn, reauth, "NEEDS_REAUTH")
        store.set_status(conn, other, "DISCONNECTED")
    with pytest.raises(NoValidTokenError) as info:
        lookup(engine, encryption_key, "org-1")
    assert (str(info.value), info.value.expired_accounts) == (
        _no_token("org-1", "its accounts are DISCONNECTED, NEEDS_REAUTH"),
        (),
    )

    expired = connect(
        engine, encryption_key, "org-2", "EAAexpired0000", ["act_3"], expires_at=NOW + dt.timedelta(days=1)
    )
    _expire(engine, expired)
    reauth_2 = connect(engine, encryption_key, "org-2", "EAAreauth20000", ["act_4"], provider="FACEBOOK")
    with engine.begin() as conn:
        store.set_status(conn, reauth_2, "NEEDS_REAUTH")
    with pytest.raises(NoValidTokenError) as info:
        lookup(engine, encryption_key, "org-2")
    assert (str(info.value), info.value.expired_accounts) == (
        _no_token("org-2", "every stored token has expired"),
        (expired,),  # the CONNECTED one only: the other needs re-authorisation anyway
    )


def test_a_token_expiring_later_is_valid_now_and_each_token_is_decrypted_once(
    engine: sa.Engine, encryption_key: str
) -> None:
    account = connect(
        engine, encryption_key, "org-1", "EAAlater000000", ["act_1", "777"], expires_at=NOW + dt.timedelta(hours=1)
    )
    keys = KeyRing.from_settings(settings(encryption_key))
    with engine.connect() as conn:
        [stored] = store.stored_tokens(conn, "org-1")
        # the keyring given is used: the settings carry no key at all
        creds = credentials.ad_account_credentials(conn, keys, "org-1", Settings.from_env({}), now=NOW)
    assert creds == [
        credentials.AdAccountCredential("org-1", "act_1", "INSTAGRAM", account, stored.token_id, "EAAlater000000"),
        credentials.AdAccountCredential("org-1", "act_777", "INSTAGRAM", account, stored.token_id, "EAAlater000000"),
    ]
    assert not creds[0].from_environment
    at_expiry = NOW + dt.timedelta(hours=1)  # a token is valid until its expiry, not at it
    with engine.connect() as conn, pytest.raises(NoValidTokenError):
        credentials.ad_account_credentials(conn, keys, "org-1", Settings.from_env({}), now=at_expiry)


def test_select_tokens_keeps_connected_meta_tokens_most_recent_first(engine: sa.Engine, encryption_key: str) -> None:
    older = connect(engine, encryption_key, "org-1", "EAAolder000000", ["act_1"], provider="FACEBOOK")
    newer = connect(engine, encryption_key, "org-1", "EAAnewer000000", ["act_2"])
    with engine.begin() as conn:
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == older)
            .values(created_at=NOW - dt.timedelta(days=2))
        )
        conn.execute(
            oauth_token.update()
            .where(oauth_token.c.connected_account_id == newer)
            .values(created_at=NOW - dt.timedelta(days=1))
        )
        tokens = store.stored_tokens(conn, "org-1")
    assert [t.connected_account_id for t in credentials.select_tokens(tokens, NOW)] == [newer, older]
    other_provider = [dataclasses.replace(t, provider="TIKTOK") for t in tokens]
    assert credentials.select_tokens(other_provider, NOW) == []
    assert credentials.select_tokens([dataclasses.replace(t, status="NEEDS_REAUTH") for t in tokens], NOW) == []


def test_the_development_fallback_in_full(
    engine: sa.Engine, encryption_key: str, fake_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="metaspend_pipeline.credentials")
    creds = lookup(
        engine,
        encryption_key,
        "org-1",
        METASPEND_ENV="development",
        META_PAGE_ACCESS_TOKEN=fake_token,
        META_AD_ACCOUNT_ID=" 777 ",
    )
    assert creds == [credentials.AdAccountCredential("org-1", "act_777", "INSTAGRAM", None, None, fake_token)]
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "metaspend_pipeline.credentials"] == [
        (
            logging.WARNING,
            "organization org-1 has no valid stored token; using the development fallback "
            "META_PAGE_ACCESS_TOKEN for ad account  777 ",
        )
    ]
    assert creds[0].from_environment
    from metaspend_pipeline.redaction import redact

    assert fake_token not in redact(f"token {fake_token}")
    for missing in ({"META_PAGE_ACCESS_TOKEN": fake_token}, {"META_AD_ACCOUNT_ID": "act_777"}):
        with pytest.raises(NoValidTokenError):
            lookup(engine, encryption_key, "org-1", METASPEND_ENV="development", **missing)


def test_store_connection_normalizes_and_refuses_a_past_expiry(engine: sa.Engine, encryption_key: str) -> None:
    account = connect(
        engine, encryption_key, "org-1", "  EAAspaced0000 \n", ["123", "act_123", "act_4"], provider=" facebook "
    )
    with engine.connect() as conn:
        [summary] = store.list_accounts(conn, "org-1")
    assert (summary.id, summary.provider, summary.ad_accounts) == (account, "FACEBOOK", ("act_123", "act_4"))
    assert [c.access_token for c in lookup(engine, encryption_key, "org-1")] == ["EAAspaced0000", "EAAspaced0000"]
    past = NOW - dt.timedelta(seconds=1)
    with pytest.raises(InvalidInputError) as info:
        connect(engine, encryption_key, "org-2", "EAApast000000", ["act_1"], expires_at=past)
    assert str(info.value) == f"the token's expiry {past.isoformat()} is in the past"
    with pytest.raises(InvalidInputError) as info:
        connect(engine, encryption_key, "org-2", "", ["act_1"])
    assert str(info.value) == "the access token read from standard input is empty"


def test_rotation_counts_the_tokens_already_on_the_current_key(engine: sa.Engine) -> None:
    from metaspend_pipeline.tokens import generate_key

    old, new = generate_key(), generate_key()
    expiry = (NOW + dt.timedelta(days=30)).replace(microsecond=0)
    connect(engine, new, "org-1", "EAAone00000000", ["act_1"])  # read first: already current
    connect(engine, old, "org-2", "EAAtwo00000000", ["act_2"], expires_at=expiry)
    connect(engine, new, "org-3", "EAAthree000000", ["act_3"])
    keys = KeyRing.from_settings(
        Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": new, "META_TOKEN_ENCRYPTION_OLD_KEYS": old})
    )
    with engine.connect() as conn:
        before = {t.organization_id: t for t in store.stored_tokens(conn)}
    with engine.begin() as conn:
        assert credentials.rotate_keys(conn, keys) == credentials.RotationReport(reencrypted=1, already_current=2)
    with engine.connect() as conn:
        after = {t.organization_id: t for t in store.stored_tokens(conn)}
    assert after["org-1"] == before["org-1"] and after["org-3"] == before["org-3"]  # untouched
    assert after["org-2"].access_token_encrypted != before["org-2"].access_token_encrypted
    assert (after["org-2"].expires_at, after["org-2"].last_refreshed_at) == (expiry, None)  # a rotation is no refresh
    assert keys.decrypt(after["org-2"].access_token_encrypted, after["org-2"].connected_account_id) == "EAAtwo00000000"


def test_an_older_token_still_reads_the_ad_accounts_the_newer_one_does_not_list(
    engine: sa.Engine, encryption_key: str
) -> None:
    older = connect(engine, encryption_key, "org-1", "EAAolder000000", ["act_1", "act_2"], provider="FACEBOOK")
    newer = connect(engine, encryption_key, "org-1", "EAAnewer000000", ["act_1"])
    creds = {c.ad_account_id: (c.connected_account_id, c.access_token) for c in lookup(engine, encryption_key, "org-1")}
    assert creds == {"act_1": (newer, "EAAnewer000000"), "act_2": (older, "EAAolder000000")}


def test_a_token_without_ad_accounts_says_how_to_add_one(engine: sa.Engine, encryption_key: str) -> None:
    connect(engine, encryption_key, "org-1", "EAAnoaccounts0", [])
    with pytest.raises(NoAdAccountError) as info:
        lookup(engine, encryption_key, "org-1")
    assert str(info.value) == (
        "No ad account ID found for organization org-1: its connected accounts list none. "
        "Reconnect with `metaspend accounts connect --org org-1 --ad-account act_...`."
    )


# --- a token that expires at the very instant it is stored ----------------------------------------


def test_an_expiry_at_this_very_instant_is_refused_and_a_microsecond_later_is_stored(
    engine: sa.Engine, encryption_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    monkeypatch.setattr(credentials, "utcnow", lambda: now)
    with pytest.raises(InvalidInputError) as info:
        connect(engine, encryption_key, "org-1", "EAAnow0000000", ["act_1"], expires_at=now)
    assert str(info.value) == f"the token's expiry {now.isoformat()} is in the past"
    later = now + dt.timedelta(microseconds=1)
    connect(engine, encryption_key, "org-1", "EAAlater00000", ["act_1"], expires_at=later)
    with engine.connect() as conn:
        [token] = store.stored_tokens(conn, "org-1")
    assert token.expires_at == later
    assert (token.is_valid_at(now), token.is_valid_at(later)) == (True, False)
