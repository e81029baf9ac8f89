"""Keeps secrets out of logs, error messages and anything else a person or a tool may read.

Two layers: every secret the process handles (decrypted tokens, appsecret_proofs, the app
secret) is registered and replaced wherever it appears, and known secret-bearing patterns
(`access_token=...` in URLs, `Authorization` headers) are masked even when the value was
never registered.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from typing import Any

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 8

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS = [
    # query-string and form parameters that carry secrets
    re.compile(
        r"(?i)\b(access_token|appsecret_proof|client_secret|fb_exchange_token|input_token|token)"
        r"(=|%3D)[^&\s\"'#]+"
    ),
    # JSON bodies and dict reprs
    re.compile(
        r"(?i)([\"'](?:access_token|appsecret_proof|client_secret|fb_exchange_token|input_token)[\"']"
        r"\s*:\s*[\"'])[^\"']+"
    ),
    # an Authorization header's value, whatever it looks like
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|oauth)\s+)?)[^\s\"',}]+"),
    # "Bearer <token>" / "OAuth <token>" elsewhere: only a token-looking value (long, with a digit),
    # so that Meta's "Invalid OAuth access token" keeps its words
    re.compile(r"(?i)\b(bearer|oauth)(\s+)([A-Za-z0-9._\-|~+/=]{16,})"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it from any text from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def shown_url(url: str) -> str:
    """`url` as it may be shown (logs, metadata, errors): without a user name or password, its query
    string (which may carry an api key) masked, without a fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, MASK if parts.query else "", ""))


def register_url_secrets(url: str) -> None:
    """Register what `shown_url` hides (the query string, each of its values, a password) as secrets,
    so that a library's message or log line naming the whole URL is redacted too."""
    parts = urllib.parse.urlsplit(url)
    register_secret(parts.query)
    register_secret(parts.password)
    for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        register_secret(value)
        register_secret(urllib.parse.quote(value, safe=""))


def _mask_token_after_scheme(match: re.Match[str]) -> str:
    scheme, space, value = match.groups()
    if not any(ch.isdigit() for ch in value):
        return match.group(0)
    return f"{scheme}{space}{MASK}"


def redact(text: object) -> str:
    """`text` with every known secret and secret-bearing parameter masked."""
    out = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    out = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", out)
    out = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}", out)
    out = _PATTERNS[2].sub(lambda m: f"{m.group(1)}{MASK}", out)
    out = _PATTERNS[3].sub(_mask_token_after_scheme, out)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the final message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_filter = RedactingFilter()


# Libraries that log request URLs (with their query strings) at DEBUG level.
THIRD_PARTY_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")


def protect_third_party_loggers() -> None:
    """Redact what the HTTP libraries log, too: urllib3 logs whole URLs at DEBUG."""
    for name in THIRD_PARTY_LOGGERS:
        get_logger(name)


def get_logger(name: str) -> logging.Logger:
    """A logger of the package whose records are redacted before any handler sees them."""
    logger = logging.getLogger(name)
    if _filter not in logger.filters:
        logger.addFilter(_filter)
    return logger


class RedactingLogger:
    """Wraps a logger-like object (Dagster's `context.log`) so that what reaches it is redacted."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def _emit(self, level: str, msg: object, *args: object) -> None:
        text = str(msg) % args if args else str(msg)
        getattr(self._target, level)(redact(text))

    def debug(self, msg: object, *args: object, **_: object) -> None:
        self._emit("debug", msg, *args)

    def info(self, msg: object, *args: object, **_: object) -> None:
        self._emit("info", msg, *args)

    def warning(self, msg: object, *args: object, **_: object) -> None:
        self._emit("warning", msg, *args)

    def error(self, msg: object, *args: object, **_: object) -> None:
        self._emit("error", msg, *args)
