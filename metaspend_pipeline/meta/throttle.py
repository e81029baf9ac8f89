"""Meta's usage headers, and how long to wait because of them.

Meta reports how much of each rate limit a caller has used, in percent, on every response
(errors included). The client paces itself from those numbers so that it is rarely blocked, and
when it is blocked it waits as long as Meta says it must, not a fixed multiple of minutes.

Pacing, once any figure reaches `usage_slowdown_pct` (85 by default), is described on `Pacer`.
When Meta has throttled the caller it waits `estimated_time_to_regain_access`.

Two scopes are paced apart: an ad account's own figures (business-use-case and ad-account usage),
by the `Pacer` of the client that reads it, and the app's figures (`X-App-Usage`,
`app_id_util_pct`), which every ad account of the app shares, by one thread-safe `AppPacer` that
all the clients of a run consult: when the app's usage is high, every thread slows down together.
"""

from __future__ import annotations

import collections
import email.utils
import json
import threading
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
_APP_FIELDS = frozenset({"x-app-usage", "x-fb-ads-insights-throttle.app_id_util_pct"})


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


def parse_usage(headers: Mapping[str, str], scope: str = "account") -> Usage | None:
    """The usage a response reports in `scope`, or None when it carries no such figure.

    "account": the ad account's own figures (what its `Pacer` paces by); "app": the app-wide
    ones (`X-App-Usage`, `app_id_util_pct`), shared by every ad account of the app.
    """
    if scope not in ("account", "app"):
        raise ValueError(f"scope must be account or app, got {scope!r}")
    lower = {k.lower(): v for k, v in headers.items()}
    figures: list[tuple[float, str]] = []
    regain: list[float] = []
    reset: list[float] = []

    def collect(header: str, entry: Mapping[str, Any], label: str) -> None:
        for name in _PERCENT_FIELDS:
            value = _number(entry.get(name))
            is_app = header == "x-app-usage" or f"{header}.{name}" in _APP_FIELDS
            if value is not None and is_app == (scope == "app"):
                figures.append((value, f"{label}.{name}"))
        if scope == "app":
            return  # Meta's wait estimates and reset times are the ad account's, not the app's
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


class AppPacer:
    """The app-wide usage, shared by every client of a run; thread-safe.

    Each client records its calls here and reports the app figures of each answer. From
    `slowdown_pct` on, the pause a `Pacer` computes becomes the spacing between any two calls of
    the app, whichever thread makes them: a call reserves the next free slot, so N threads
    together make no more calls than one would. Below `slowdown_pct` the slots are free.
    """

    def __init__(self, slowdown_pct: float, window_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pacer = Pacer(slowdown_pct, window_seconds, clock)
        self._spacing = 0.0
        self._last_slot = float("-inf")
        self._next_slot = float("-inf")

    def reserve(self) -> float:
        """Seconds the caller must wait before its next call; the call is counted as made then."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._last_slot = slot
            self._next_slot = slot + self._spacing
            self._pacer._calls.append(slot)
            return slot - now

    def observe(self, usage: Usage | None) -> None:
        if usage is None:
            return
        with self._lock:
            self._pacer.observe(usage)
            self._spacing = self._pacer.take_delay()
            # the spacing counts from the last call made (or reserved), not from the previous slot;
            # below the slowdown the next call may go at once
            self._next_slot = self._last_slot + self._spacing if self._spacing else float("-inf")

    @property
    def last(self) -> Usage | None:
        return self._pacer.last
