"""The token vault: AES-256-GCM encryption of Meta access tokens at rest.

Stored format (documented in docs/security.md, so another application can write it):

    v1:<key id>:<nonce>:<ciphertext and tag>

- `v1`: format version.
- key id: the first 8 hex digits of SHA-256 of the raw 32-byte key, so the reader knows which
  of its keys to use without trying each.
- nonce: 12 random bytes, fresh for every encryption, standard base64.
- ciphertext and tag: AES-256-GCM of the UTF-8 token with the 16-byte tag appended (the way
  `cryptography` and WebCrypto produce it), standard base64.
- associated data: the UTF-8 bytes of the `connected_account_id` the token belongs to, so a
  ciphertext copied onto another account's row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import register_secret
from metaspend_pipeline.settings import Settings

FORMAT_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
CURRENT_KEY_VAR = "META_TOKEN_ENCRYPTION_KEY"
OLD_KEYS_VAR = "META_TOKEN_ENCRYPTION_OLD_KEYS"


class TokenKeyError(MetaspendError, ValueError):
    """The encryption keys are missing or malformed. The message never contains a key."""


class TokenDecryptionError(MetaspendError, ValueError):
    """A stored token cannot be decrypted with the configured keys."""


def generate_key() -> str:
    """A new random key, base64-encoded, for META_TOKEN_ENCRYPTION_KEY."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_key(text: str, variable: str) -> bytes:
    """Decode one base64 key, insisting on 32 bytes."""
    cleaned = text.strip()
    try:
        padded = cleaned + "=" * (-len(cleaned) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise TokenKeyError(f"{variable} is not valid base64; generate a key with `metaspend keys generate`") from None
    if len(raw) != KEY_BYTES:
        raise TokenKeyError(
            f"{variable} must decode to {KEY_BYTES} bytes, it decodes to {len(raw)}; "
            "generate a key with `metaspend keys generate`"
        )
    return raw


@dataclass(frozen=True)
class KeyRing:
    """The current key, which encrypts, and older keys, which still decrypt."""

    current: bytes = field(repr=False)
    old: tuple[bytes, ...] = field(default=(), repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        if not settings.token_encryption_key:
            raise TokenKeyError(
                f"{CURRENT_KEY_VAR} is not set; generate one with `metaspend keys generate` "
                "and export it before storing or reading tokens"
            )
        current = parse_key(settings.token_encryption_key, CURRENT_KEY_VAR)
        old = tuple(
            parse_key(part, f"{OLD_KEYS_VAR} (entry {i})")
            for i, part in enumerate((settings.token_encryption_old_keys or "").split(","), start=1)
            if part.strip()
        )
        return cls(current=current, old=old)

    @classmethod
    def from_env(cls) -> KeyRing:
        return cls.from_settings(Settings.from_env())

    @property
    def current_key_id(self) -> str:
        return key_id(self.current)

    def _key_for(self, kid: str) -> bytes | None:
        for key in (self.current, *self.old):
            if key_id(key) == kid:
                return key
        return None

    def encrypt(self, token: str, connected_account_id: str) -> str:
        if not token:
            raise ValueError("refusing to encrypt an empty token")
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, token.encode("utf-8"), _associated_data(connected_account_id))
        return ":".join(
            [FORMAT_VERSION, self.current_key_id, _b64(nonce), _b64(sealed)],
        )

    def decrypt(self, stored: str, connected_account_id: str) -> str:
        """The plaintext token; registered for redaction before it is returned."""
        kid, nonce, sealed = _split(stored, connected_account_id)
        key = self._key_for(kid)
        if key is None:
            raise TokenDecryptionError(
                f"token of connected account {connected_account_id} was encrypted with key {kid}, "
                f"which is neither {CURRENT_KEY_VAR} nor in {OLD_KEYS_VAR}"
            )
        try:
            plain = AESGCM(key).decrypt(nonce, sealed, _associated_data(connected_account_id))
        except InvalidTag:
            raise TokenDecryptionError(
                f"token of connected account {connected_account_id} failed authentication: "
                "it was altered, or it belongs to another connected account"
            ) from None
        token = plain.decode("utf-8")
        register_secret(token)
        return token

    def needs_rotation(self, stored: str) -> bool:
        parts = stored.split(":")
        return len(parts) != 4 or parts[1] != self.current_key_id


def _associated_data(connected_account_id: str) -> bytes:
    if not connected_account_id:
        raise ValueError("a token must be bound to a connected account id")
    return str(connected_account_id).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _split(stored: str, connected_account_id: str) -> tuple[str, bytes, bytes]:
    """The key id, nonce and sealed bytes of a stored value, its format checked (the version too)."""
    parts = (stored or "").split(":")
    if len(parts) != 4 or parts[0] != FORMAT_VERSION:
        found = parts[0] if len(parts) == 4 else f"{len(parts)} fields"
        raise TokenDecryptionError(
            f"token of connected account {connected_account_id} is not in the {FORMAT_VERSION} "
            f"format 'v1:<key id>:<nonce>:<ciphertext>' (found {found})"
        )
    try:
        nonce = base64.b64decode(parts[2], validate=True)
        sealed = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        raise TokenDecryptionError(
            f"token of connected account {connected_account_id} has a nonce or ciphertext that is not valid base64"
        ) from None
    if len(nonce) != NONCE_BYTES or len(sealed) < 17:
        raise TokenDecryptionError(
            f"token of connected account {connected_account_id} has a {len(nonce)}-byte nonce "
            f"and a {len(sealed)}-byte ciphertext; expected a 12-byte nonce and a ciphertext with "
            "its 16-byte tag"
        )
    return parts[1], nonce, sealed
