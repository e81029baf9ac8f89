"""Meta's usage headers, and how long to wait because of them.

Meta reports how much of each rate limit a caller has used, in percent, on every response
(errors included). The client paces itself from those numbers so that it is rarely blocked, and
when it is blocked it waits as long as Meta says it must, not a fixed multiple of minutes.

Pacing, once any figure reaches `usage_slowdown_pct` (85 by default), is described on `Pacer`.
When Meta has throttled the caller it waits `estimated_time_to_regain_access`.
"""

from __future__ import annotations

import collections
import email.utils
import json
import time
from collections.abc import Callable, Mapping
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
    """Spaces calls from the usage Meta reports; one per client (one token, one ad account).

    From `slowdown_pct` on, the headroom left (100% - usage, in calls of `step` percent each) is
    spread over the time until usage next drops: when the oldest call still counted expires.
    The pacer knows when its own calls were made; Meta says how long usage takes to reset
    (`reset_time_duration`, else the window is taken as `window_seconds`). So the client slows
    down before Meta blocks it, and at 100% waits until the first call leaves the window, not
    until the whole window has emptied.
    """

    def __init__(self, slowdown_pct: float, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.slowdown_pct = slowdown_pct
        self.window_seconds = window_seconds
        self._clock = clock
        self._calls: collections.deque[float] = collections.deque(maxlen=10_000)
        self._last: Usage | None = None
        self._step = 0.0
        self._delay = 0.0

    def record_call(self) -> None:
        self._calls.append(self._clock())

    def observe(self, usage: Usage | None) -> None:
        if usage is None:
            return
        previous, self._last = self._last, usage
        if previous is not None and usage.pct > previous.pct:
            self._step = usage.pct - previous.pct
        if usage.regain_seconds:  # throttled: Meta says when access comes back
            self._delay = usage.regain_seconds
            return
        if usage.pct < self.slowdown_pct:
            self._delay = 0.0
            return
        step = self._step or 1.0
        headroom_calls = max(0.0, (100.0 - usage.pct) / step)
        self._delay = self._until_usage_drops(usage, step) / (headroom_calls + 1.0)

    def _until_usage_drops(self, usage: Usage, step: float) -> float:
        """Seconds until the oldest call still counted leaves the window."""
        window = usage.reset_seconds or self.window_seconds
        now = self._clock()
        own = [t for t in self._calls if t > now - window]
        if not own or abs(len(own) * step - usage.pct) > 0.25 * usage.pct:
            return window  # others' calls count too: assume the worst, a full window
        # Meta counted the call when it arrived, a little after it was sent: keep a margin, since
        # a call that comes too early is throttled for whole minutes
        margin = max(0.25, 0.02 * window)
        return max(0.0, own[0] + window + margin - now)

    def take_delay(self) -> float:
        """The pause owed before the next call; paid once."""
        delay, self._delay = self._delay, 0.0
        return delay

    @property
    def last(self) -> Usage | None:
        return self._last
