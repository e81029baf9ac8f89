"""Meta's usage headers, and how long to wait because of them.

Meta reports how much of each rate limit a caller has used, in percent, on every response
(errors included). The client paces itself from those numbers so that it is rarely blocked, and
when it is blocked it waits as long as Meta says it must, not a fixed multiple of minutes.

Pacing, once any figure reaches `usage_slowdown_pct` (85 by default): each call raised usage by
`step` percent, and usage drains to zero over `reset` seconds (X-Ad-Account-Usage's
`reset_time_duration`, else the limit's window, an hour), so calls spaced `reset * step / usage`
seconds apart keep usage level instead of running into the limit. At 100% the caller waits for
`estimated_time_to_regain_access` (or `reset_time_duration`) before the next call.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USAGE_HEADERS = (
    "x-app-usage",
    "x-ad-account-usage",
    "x-business-use-case-usage",
    "x-fb-ads-insights-throttle",
)
_PERCENT_FIELDS = ("call_count", "total_time", "total_cputime", "acc_id_util_pct", "app_id_util_pct")


@dataclass(frozen=True)
class Usage:
    """The highest utilisation reported by one response, and Meta's own wait estimates."""

    pct: float
    figure: str
    regain_seconds: float | None = None
    reset_seconds: float | None = None

    @property
    def blocked(self) -> bool:
        return self.pct >= 100 or bool(self.regain_seconds)


def _load(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_usage(headers: Mapping[str, str]) -> Usage | None:
    """The usage a response reports, or None when it carries no usage header."""
    lower = {k.lower(): v for k, v in headers.items()}
    figures: list[tuple[float, str]] = []
    regain: list[float] = []
    reset: list[float] = []

    def collect(header: str, entry: Mapping[str, Any], label: str) -> None:
        for name in _PERCENT_FIELDS:
            value = _number(entry.get(name))
            if value is not None:
                figures.append((value, f"{label}.{name}"))
        minutes = _number(entry.get("estimated_time_to_regain_access"))
        if minutes:
            regain.append(minutes * 60)
        seconds = _number(entry.get("reset_time_duration"))
        if seconds and header == "x-ad-account-usage":
            reset.append(seconds)

    for header in USAGE_HEADERS:
        parsed = _load(lower.get(header))
        if isinstance(parsed, dict) and header == "x-business-use-case-usage":
            for business, entries in parsed.items():
                for entry in entries if isinstance(entries, list) else []:
                    if isinstance(entry, dict):
                        collect(header, entry, f"{header}[{business}:{entry.get('type', '?')}]")
        elif isinstance(parsed, dict):
            collect(header, parsed, header)
    if not figures and not regain:
        return None
    pct, figure = max(figures) if figures else (0.0, "none")
    return Usage(
        pct=pct,
        figure=figure,
        regain_seconds=max(regain) if regain else None,
        reset_seconds=max(reset) if reset else None,
    )


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`Retry-After` as seconds, whether given as a number or an HTTP date."""
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(when - (now if now is not None else time.time()), 0.0)


class Pacer:
    """Spaces calls from the usage Meta reports; one per client (one token, one ad account)."""

    def __init__(self, slowdown_pct: float, window_seconds: float) -> None:
        self.slowdown_pct = slowdown_pct
        self.window_seconds = window_seconds
        self._last: Usage | None = None
        self._delay = 0.0

    def observe(self, usage: Usage | None) -> None:
        if usage is None:
            return
        previous, self._last = self._last, usage
        if usage.blocked:
            self._delay = usage.regain_seconds or usage.reset_seconds or self.window_seconds
        elif usage.pct < self.slowdown_pct:
            self._delay = 0.0
        else:
            step = usage.pct - previous.pct if previous is not None else 1.0
            window = usage.reset_seconds or self.window_seconds
            self._delay = window * step / usage.pct if step > 0 else 0.0

    def take_delay(self) -> float:
        """The pause owed before the next call; paid once."""
        delay, self._delay = self._delay, 0.0
        return delay

    @property
    def last(self) -> Usage | None:
        return self._last
