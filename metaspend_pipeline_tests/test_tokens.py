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

README = Path(__file__).resolve().parents[1] / "README.md"


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


def test_readme_worked_example_decrypts() -> None:
    """The README's example is what another application checks its encoder against."""
    text = README.read_text()
    key = re.search(r"^key:\s+(\S+)$", text, re.M)
    account = re.search(r"^connected_account_id:\s+(\S+)$", text, re.M)
    token = re.search(r"^token:\s+(\S+)$", text, re.M)
    stored = re.search(r"^stored:\s+(v1:\S+)$", text, re.M)
    assert key and account and token and stored, "README lost its worked example"
    assert ring(key.group(1)).decrypt(stored.group(1), account.group(1)) == token.group(1)


NODE_VAULT = README.parent / "docs" / "token-vault.js"


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
