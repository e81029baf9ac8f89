"""A run's progress, as a person reads it: follows the file the `metaspend_progress` logger writes
(`defs/common/progress.py`) and echoes a line per step started and finished (with the days it wrote),
per log line of the assets' own, per failure and per check that did not pass. Not Dagster's DEBUG log.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaspend_pipeline.redaction import redact
from metaspend_pipeline.safe_text import safe_text

Echo = Callable[[str], None]
MAX_LINE = 200  # a log line of the run, shown at most this long (the run's log in the UI has it whole)


@dataclass(frozen=True)
class CheckVerdict:
    asset: str
    check: str
    passed: bool
    severity: str  # ERROR or WARN
    description: str

    @property
    def state(self) -> str:
        if self.passed:
            return "passed"
        return "warning" if self.severity == "WARN" else "FAILED"


class RunProgress:
    """Reads the progress file from where it stopped each time `poll` is called."""

    def __init__(self, path: Path, echo: Echo, started: float | None = None) -> None:
        self._path, self._echo = path, echo
        self._started = started if started is not None else time.time()
        self._offset = 0
        self._written: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._pending: dict[str, float] = {}  # steps started and not shown yet
        self.checks: list[CheckVerdict] = []
        self.finished = False

    def _say(self, at: float, message: str) -> None:
        self._echo(safe_text(redact(f"[{max(at - self._started, 0.0):6.1f}s] {message}")))

    def poll(self) -> None:
        if not self._path.exists():
            return
        with self._path.open(encoding="utf-8") as lines:
            lines.seek(self._offset)
            while (line := lines.readline()).endswith("\n"):
                self._offset = lines.tell()
                self._handle(json.loads(line))

    def follow(self, finished: Callable[[], bool], interval: float = 0.2) -> None:
        """Echo as the run goes, until `finished()` says it is over."""
        while not finished():
            self.poll()
            time.sleep(interval)
        self.poll()

    def _show_start(self, step: str) -> None:
        """A step's start is shown once it has something to say: a step that ends writing and saying
        nothing (a check's) shows no line; its verdict is in `checks`."""
        if step in self._pending:
            self._say(self._pending.pop(step), f"{step}: started")

    def _handle(self, entry: dict[str, Any]) -> None:
        kind, step, at = entry["kind"], entry.get("step") or "", entry["t"]
        if kind == "log":
            self._show_start(step)
            message = entry["message"].splitlines()[0] if entry["message"] else ""
            message = message if len(message) <= MAX_LINE else message[: MAX_LINE - 3] + "..."
            self._say(at, f"{step}: {message}" if step else message)
        elif kind == "step_started":
            self._pending[step] = at
        elif kind == "materialized":
            self._written[step][entry["asset"]].add(entry.get("partition") or "")
        elif kind == "step_succeeded":
            written = "; ".join(
                f"{'' if asset == step else asset + ' '}{_written(asset, keys)}"
                for asset, keys in self._written.pop(step, {}).items()
            )
            if written or step not in self._pending:
                self._show_start(step)
                self._say(at, f"{step}: done" + (f", {written}" if written else ""))
            self._pending.pop(step, None)
        elif kind == "step_failed":
            self._show_start(step)
            self._say(at, f"{step}: FAILED: {entry.get('message') or 'failed'}")
        elif kind == "check":
            verdict = CheckVerdict(
                entry["asset"], entry["check"], entry["passed"], entry["severity"], entry.get("description") or ""
            )
            self.checks.append(verdict)
            if not verdict.passed:
                self._say(at, f"{step}: check {verdict.check} on {verdict.asset}: {verdict.state}")
        elif kind in ("run_succeeded", "run_failed"):
            self.finished = True


def _written(asset: str, keys: set[str]) -> str:
    """'14 day(s) written (2026-11-22..2026-12-05)'; the reach assets' weeks and months by their first days."""
    unit = "week" if asset.endswith("_weekly") else "month" if asset.endswith("_monthly") else "day"
    return f"{len(keys)} {unit}(s) written ({min(keys)}..{max(keys)})"
