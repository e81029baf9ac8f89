"""Errors of the Graph API client, classified the way the pipeline must react to them.

Every message is redacted (no token, appsecret_proof or client secret) and names the ad
account, and where it applies the date and field, that the error is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import redact

# Meta's throttling codes (HTTP 400 unless noted): app, user, ad-account, ads insights, others.
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2, 99})
TOKEN_CODE = 190
REDUCE_DATA_TEXT = "reduce the amount of data"
OLD_DATA_CODE = 3018
DEPRECATED_VERSION_CODE = 2635  # "(#2635) You are calling a deprecated version of the Ads API. ..."


@dataclass(frozen=True)
class GraphError:
    """Meta's error object, as parsed from a response body."""

    http_status: int
    message: str
    code: int | None = None
    subcode: int | None = None
    type: str | None = None
    fbtrace_id: str | None = None
    is_transient: bool = False

    @classmethod
    def from_body(cls, http_status: int, body: Any) -> GraphError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(http_status=http_status, message=f"HTTP {http_status} without a Graph API error body")
        return cls(
            http_status=http_status,
            message=redact(error.get("message") or ""),
            code=_int_or_none(error.get("code")),
            subcode=_int_or_none(error.get("error_subcode")),
            type=error.get("type"),
            fbtrace_id=error.get("fbtrace_id"),
            is_transient=bool(error.get("is_transient")),
        )

    @property
    def is_throttle(self) -> bool:
        return self.http_status == 429 or self.code in THROTTLE_CODES

    @property
    def is_token_error(self) -> bool:
        return self.code == TOKEN_CODE

    @property
    def asks_for_less_data(self) -> bool:
        return REDUCE_DATA_TEXT in self.message.lower()

    @property
    def is_transient_failure(self) -> bool:
        return self.is_transient or self.code in TRANSIENT_CODES or self.http_status >= 500

    def describe(self) -> str:
        parts = [f"HTTP {self.http_status}"]
        if self.code is not None:
            parts.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        text = ", ".join(parts) + (f": {self.message}" if self.message else "")
        return text + (f" (fbtrace_id {self.fbtrace_id})" if self.fbtrace_id else "")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class MetaApiError(MetaspendError):
    """A Graph API call failed for good."""

    def __init__(self, message: str, *, ad_account_id: str | None = None, error: GraphError | None = None):
        super().__init__(redact(message))
        self.ad_account_id = ad_account_id
        self.error = error


class MetaTokenError(MetaApiError):
    """Meta rejected the token (code 190): never retried; the account needs re-authorisation."""


class MetaPermissionError(MetaApiError):
    """The token may not read the object (codes 10, 100/33, 200-299): never retried."""


class MetaRetriesExhaustedError(MetaApiError):
    """Retries or the time budget ran out on throttles or transient failures."""


class MetaApiVersionError(MetaApiError):
    """Meta no longer serves the configured META_API_VERSION (code 2635): never retried."""


class MetaReportJobError(MetaApiError):
    """An async report run failed, even after a retry and splitting its date range."""


class MetaDataError(MetaApiError):
    """A row from Meta does not make sense (missing id, non-numeric metric, date out of range)."""
