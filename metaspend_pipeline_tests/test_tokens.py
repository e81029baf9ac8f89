from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from metaspend_pipeline.settings import Settings
from metaspend_pipeline.tokens import KeyRing, TokenDecryptionError, TokenKeyError, generate_key, key_id, parse_key

DOCS = Path(__file__).resolve().parents[1] / "docs"
SECURITY_PAGE = DOCS / "security.md"  # the token format and its worked example


def ring(current: str, *old: str) -> KeyRing:
    return KeyRing.from_settings(
        Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": current, "META_TOKEN_ENCRYPTION_OLD_KEYS": ",".join(old)})
    )


def test_round_trip_uses_a_fresh_nonce_each_time(fake_token: str) -> None:
    keys = ring(generate_key())
    first = keys.encrypt(fake_token, "acct-1")
    second = keys.encrypt(fake_token, "acct-1")
    assert first != second
    assert first.split(":")[2] != second.split(":")[2]
    assert keys.decrypt(first, "acct-1") == fake_token
    assert keys.decrypt(second, "acct-1") == fake_token
    assert fake_token not in first


def test_stored_format_is_version_key_id_nonce_ciphertext(fake_token: str) -> None:
    keys = ring(generate_key())
    version, kid, nonce, sealed = keys.encrypt(fake_token, "acct-1").split(":")
    assert version == "v1"
    assert kid == keys.current_key_id and re.fullmatch(r"[0-9a-f]{8}", kid)
    assert len(base64.b64decode(nonce)) == 12
    assert len(base64.b64decode(sealed)) == len(fake_token) + 16


def test_tampered_ciphertext_fails_with_a_clear_error(fake_token: str) -> None:
    keys = ring(generate_key())
    version, kid, nonce, sealed = keys.encrypt(fake_token, "acct-1").split(":")
    raw = bytearray(base64.b64decode(sealed))
    raw[0] ^= 0x01
    tampered = ":".join([version, kid, nonce, base64.b64encode(bytes(raw)).decode()])
    with pytest.raises(TokenDecryptionError, match="connected account acct-1 failed authentication") as info:
        keys.decrypt(tampered, "acct-1")
    assert fake_token not in str(info.value)


def test_ciphertext_moved_to_another_account_does_not_decrypt(fake_token: str) -> None:
    keys = ring(generate_key())
    stored = keys.encrypt(fake_token, "acct-1")
    with pytest.raises(TokenDecryptionError, match="acct-2.*belongs to another connected account"):
        keys.decrypt(stored, "acct-2")


def test_old_keys_decrypt_and_unknown_keys_are_named(fake_token: str) -> None:
    old, new = generate_key(), generate_key()
    stored = ring(old).encrypt(fake_token, "acct-1")
    assert ring(new, old).decrypt(stored, "acct-1") == fake_token
    assert ring(new, old).needs_rotation(stored)
    with pytest.raises(TokenDecryptionError, match="encrypted with key [0-9a-f]{8}, which is neither"):
        ring(new).decrypt(stored, "acct-1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (base64.b64encode(b"short").decode(), "must decode to 32 bytes, it decodes to 5"),
        ("not base64 at all!", "is not valid base64"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(value: str, message: str) -> None:
    with pytest.raises(TokenKeyError, match=message) as info:
        parse_key(value, "META_TOKEN_ENCRYPTION_KEY")
    assert value not in str(info.value)


def test_keys_in_standard_and_url_safe_base64_with_or_without_padding_are_the_same_key() -> None:
    """A key whose base64 has both alphabets' special characters (+/ and -_) and padding."""
    raw = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFE, 0x01])
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode()
    assert "+" in standard and "/" in standard and standard.endswith("=")
    assert "-" in url_safe and "_" in url_safe
    for text in (standard, url_safe, url_safe.rstrip("="), f"  {standard}\n"):
        assert parse_key(text, "META_TOKEN_ENCRYPTION_KEY") == raw, text
    stored = ring(standard).encrypt("EAAtest", "acct-1")
    assert ring(url_safe.rstrip("=")).decrypt(stored, "acct-1") == "EAAtest"


def test_missing_key_says_how_to_make_one() -> None:
    with pytest.raises(TokenKeyError, match="metaspend keys generate"):
        KeyRing.from_settings(Settings.from_env({}))


@pytest.mark.parametrize("stored", ["", "v2:abcd:AAAA:AAAA", "v1:abcd:not-base64!:AAAA", "v1:abcd:AAAA:AAAA"])
def test_malformed_stored_values_name_the_account(stored: str) -> None:
    with pytest.raises(TokenDecryptionError, match="connected account acct-9"):
        ring(generate_key()).decrypt(stored, "acct-9")


def test_the_token_format_worked_example_decrypts() -> None:
    """docs/security.md's example is what another application checks its encoder against."""
    text = SECURITY_PAGE.read_text()
    key = re.search(r"^key:\s+(\S+)$", text, re.M)
    account = re.search(r"^connected_account_id:\s+(\S+)$", text, re.M)
    token = re.search(r"^token:\s+(\S+)$", text, re.M)
    stored = re.search(r"^stored:\s+(v1:\S+)$", text, re.M)
    assert key and account and token and stored, "docs/security.md lost its worked example"
    assert ring(key.group(1)).decrypt(stored.group(1), account.group(1)) == token.group(1)


NODE_VAULT = DOCS / "token-vault.js"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the interop test needs it")
def test_node_reference_code_and_the_pipeline_read_each_other(fake_token: str) -> None:
    key = generate_key()
    keys = ring(key)
    env = {"META_TOKEN_ENCRYPTION_KEY": key, "PATH": os.environ["PATH"]}

    def node(mode: str, text: str) -> str:
        proc = subprocess.run(
            ["node", str(NODE_VAULT), mode, "acct-7"],
            input=text,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        return proc.stdout

    assert keys.decrypt(node("encrypt", fake_token), "acct-7") == fake_token
    assert node("decrypt", keys.encrypt(fake_token, "acct-7")) == fake_token


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the interop test needs it")
@pytest.mark.parametrize(
    ("nonce_bytes", "tag_bytes", "token", "message"),
    [
        (12, 4, "", "ciphertext must hold at least 1 byte and a 16-byte tag, not 4 bytes"),
        (12, 4, "EAAshort", "ciphertext must hold at least 1 byte and a 16-byte tag, not 12 bytes"),
        (16, 16, "EAAlong", "nonce must be 12 bytes, not 16"),
        (8, 16, "EAAlong", "nonce must be 12 bytes, not 8"),
    ],
)
def test_node_reference_code_refuses_short_tags_and_other_nonces(
    nonce_bytes: int, tag_bytes: int, token: str, message: str
) -> None:
    """GCM itself accepts a 4-byte tag (a forger's 1 in 2^32) and any nonce length: the vault must not."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = generate_key()
    raw_key = base64.b64decode(key)
    nonce = os.urandom(nonce_bytes)
    encryptor = Cipher(algorithms.AES(raw_key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(b"acct-7")
    sealed = encryptor.update(token.encode()) + encryptor.finalize() + encryptor.tag[:tag_bytes]
    stored = ":".join(["v1", key_id(raw_key), base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()])
    proc = subprocess.run(
        ["node", str(NODE_VAULT), "decrypt", "acct-7"],
        input=stored,
        capture_output=True,
        text=True,
        env={"META_TOKEN_ENCRYPTION_KEY": key, "PATH": os.environ["PATH"]},
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr


# --- exact rules of the key and stored formats (mutation testing, docs/development.md) -----------------

KEY_BYTES = bytes(range(32))
KEY_STANDARD = base64.b64encode(bytes(range(200, 232))).decode()


def test_a_key_is_read_with_or_without_padding_spaces_or_the_url_safe_alphabet() -> None:
    raw = bytes(range(200, 232))
    assert "+" in KEY_STANDARD or "/" in KEY_STANDARD
    url_safe = base64.urlsafe_b64encode(raw).decode()
    assert url_safe != KEY_STANDARD
    for text in (KEY_STANDARD, f"  {KEY_STANDARD}\n", KEY_STANDARD.rstrip("="), url_safe, url_safe.rstrip("=")):
        assert parse_key(text, "META_TOKEN_ENCRYPTION_KEY") == raw, text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            base64.b64encode(bytes(31)).decode(),
            "META_TOKEN_ENCRYPTION_KEY must decode to 32 bytes, it decodes to 31; generate a key with `metaspend keys generate`",
        ),
        (
            base64.b64encode(bytes(33)).decode(),
            "META_TOKEN_ENCRYPTION_KEY must decode to 32 bytes, it decodes to 33; generate a key with `metaspend keys generate`",
        ),
        (
            KEY_STANDARD[:10] + "*" + KEY_STANDARD[11:],
            "META_TOKEN_ENCRYPTION_KEY is not valid base64; generate a key with `metaspend keys generate`",
        ),
    ],
)
def test_a_key_of_another_length_or_alphabet_is_refused_with_the_exact_message(value: str, message: str) -> None:
    with pytest.raises(TokenKeyError) as info:
        parse_key(value, "META_TOKEN_ENCRYPTION_KEY")
    assert str(info.value) == message


def test_old_keys_are_a_comma_separated_list_and_a_bad_entry_is_named_by_its_position() -> None:
    current, first, second = generate_key(), generate_key(), generate_key()
    keys = ring(current, first, " ", second)  # an empty entry is skipped, not refused
    assert keys.current == base64.b64decode(current)
    assert keys.old == (base64.b64decode(first), base64.b64decode(second))
    with pytest.raises(TokenKeyError) as info:
        ring(current, first, base64.b64encode(b"short").decode())
    assert str(info.value).startswith("META_TOKEN_ENCRYPTION_OLD_KEYS (entry 2) must decode to 32 bytes")
    assert ring(current).old == ()


def test_the_missing_key_message_in_full() -> None:
    with pytest.raises(TokenKeyError) as info:
        KeyRing.from_settings(Settings.from_env({"META_TOKEN_ENCRYPTION_KEY": ""}))
    assert str(info.value) == (
        "META_TOKEN_ENCRYPTION_KEY is not set; generate one with `metaspend keys generate` "
        "and export it before storing or reading tokens"
    )


def test_from_env_reads_the_keys_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    current, old = generate_key(), generate_key()
    monkeypatch.setenv("META_TOKEN_ENCRYPTION_KEY", current)
    monkeypatch.setenv("META_TOKEN_ENCRYPTION_OLD_KEYS", old)
    assert KeyRing.from_env() == KeyRing(base64.b64decode(current), (base64.b64decode(old),))


def test_key_id_is_the_first_8_hex_digits_of_the_keys_sha256() -> None:
    import hashlib

    assert key_id(KEY_BYTES) == hashlib.sha256(KEY_BYTES).hexdigest()[:8]
    assert KeyRing(KEY_BYTES).current_key_id == hashlib.sha256(KEY_BYTES).hexdigest()[:8]
    assert len(base64.b64decode(generate_key())) == 32
    assert generate_key() != generate_key()


def test_a_stored_token_decrypts_with_aes_gcm_bound_to_its_account(fake_token: str) -> None:
    """Decrypted with `cryptography` directly, the way another application would read the format."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    stored = KeyRing(KEY_BYTES).encrypt(fake_token, "acct-1")
    version, kid, nonce, sealed = stored.split(":")
    assert (version, kid) == ("v1", key_id(KEY_BYTES))
    plain = AESGCM(KEY_BYTES).decrypt(base64.b64decode(nonce, validate=True), base64.b64decode(sealed), b"acct-1")
    assert plain.decode() == fake_token
    with pytest.raises(ValueError, match=r"^refusing to encrypt an empty token$"):  # the whole message
        KeyRing(KEY_BYTES).encrypt("", "acct-1")
    for bad_account in ("", None):
        with pytest.raises(ValueError, match=r"^a token must be bound to a connected account id$"):
            KeyRing(KEY_BYTES).encrypt(fake_token, bad_account)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^a token must be bound to a connected account id$"):
            KeyRing(KEY_BYTES).decrypt(stored, bad_account)  # type: ignore[arg-type]


def _stored(nonce: bytes, sealed: bytes, kid: str | None = None) -> str:
    return ":".join(
        ["v1", kid or key_id(KEY_BYTES), base64.b64encode(nonce).decode(), base64.b64encode(sealed).decode()]
    )


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (
            "v1:abcd:AAAA",
            "token of connected account acct-9 is not in the v1 format 'v1:<key id>:<nonce>:<ciphertext>' (found 3 fields)",
        ),
        (
            "v2:abcd:AAAA:AAAA",
            "token of connected account acct-9 is not in the v1 format 'v1:<key id>:<nonce>:<ciphertext>' (found v2)",
        ),
        ("v1:abcd:AAAA:AA*A", "token of connected account acct-9 has a nonce or ciphertext that is not valid base64"),
        (
            _stored(bytes(11), bytes(17)),
            "token of connected account acct-9 has a 11-byte nonce and a 17-byte ciphertext; "
            "expected a 12-byte nonce and a ciphertext with its 16-byte tag",
        ),
        (
            _stored(bytes(12), bytes(16)),
            "token of connected account acct-9 has a 12-byte nonce and a 16-byte ciphertext; "
            "expected a 12-byte nonce and a ciphertext with its 16-byte tag",
        ),
        (
            _stored(bytes(12), bytes(17)),  # long enough to be tried: fails authentication instead
            "token of connected account acct-9 failed authentication: it was altered, or it belongs to another connected account",
        ),
        (
            _stored(bytes(12), bytes(17), kid="00000000"),
            "token of connected account acct-9 was encrypted with key 00000000, which is neither "
            "META_TOKEN_ENCRYPTION_KEY nor in META_TOKEN_ENCRYPTION_OLD_KEYS",
        ),
    ],
)
def test_malformed_stored_values_are_refused_with_the_exact_message(stored: str, message: str) -> None:
    with pytest.raises(TokenDecryptionError) as info:
        KeyRing(KEY_BYTES).decrypt(stored, "acct-9")
    assert str(info.value) == message


def test_a_decrypted_token_is_masked_in_logs_from_then_on(fake_token: str) -> None:
    from metaspend_pipeline.redaction import redact

    stored = KeyRing(KEY_BYTES).encrypt(fake_token, "acct-1")
    assert KeyRing(KEY_BYTES).decrypt(stored, "acct-1") == fake_token
    assert fake_token not in redact(f"calling Meta with {fake_token}")


@pytest.mark.parametrize(
    ("stored", "needs"),
    [
        (lambda: KeyRing(KEY_BYTES).encrypt("EAAx", "a"), False),
        (lambda: KeyRing(bytes(32)).encrypt("EAAx", "a"), True),
        (lambda: "v1:" + key_id(KEY_BYTES) + ":AAAA", True),  # not 4 fields: rewrite it
        (lambda: "garbage", True),
    ],
)
def test_needs_rotation_unless_written_with_the_current_key(stored, needs: bool) -> None:  # type: ignore[no-untyped-def]
    assert KeyRing(KEY_BYTES).needs_rotation(stored()) is needs


def test_a_nonce_or_ciphertext_with_a_character_outside_base64_is_refused_as_such(fake_token: str) -> None:
    """Not decoded leniently (skipping the stray character), which would fail later as tampering."""
    nonce, sealed = base64.b64encode(bytes(12)).decode(), base64.b64encode(bytes(17)).decode()
    for stray_nonce, stray_sealed in ((nonce[:8] + "*" + nonce[8:], sealed), (nonce, sealed[:8] + "*" + sealed[8:])):
        stored = ":".join(["v1", key_id(KEY_BYTES), stray_nonce, stray_sealed])
        with pytest.raises(TokenDecryptionError) as info:
            KeyRing(KEY_BYTES).decrypt(stored, "acct-9")
        assert str(info.value) == "token of connected account acct-9 has a nonce or ciphertext that is not valid base64"
