"""`metaspend_progress`: a Dagster logger that writes what a person wants to know of a run (steps started
and finished, the assets' own log lines, days written, check verdicts, failures) to a file, one JSON
object per line, for `metaspend demo` and `metaspend backfill --wait` to show while the run goes.

It is a logger (Dagster's public extension point for a run's events), so it works wherever the run
executes: in the command's process or in a run worker the instance launched. Off unless its `path` is
set in the run config; messages are redacted before they are written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import dagster as dg

from metaspend_pipeline.redaction import redact

LOGGER_KEY = "metaspend_progress"
_KINDS = {
    "STEP_START": "step_started",
    "STEP_SUCCESS": "step_succeeded",
    "STEP_FAILURE": "step_failed",
    "ASSET_MATERIALIZATION": "materialized",
    "ASSET_CHECK_EVALUATION": "check",
    "PIPELINE_SUCCESS": "run_succeeded",
    "PIPELINE_FAILURE": "run_failed",
}


def run_config(path: Path, console_level: str = "CRITICAL") -> dict[str, Any]:
    """The run config that turns the logger on, writing to `path`; Dagster's console log at `console_level`."""
    return {
        "loggers": {
            "console": {"config": {"log_level": console_level}},
            LOGGER_KEY: {"config": {"path": str(path)}},
        }
    }


class _ProgressHandler(logging.Handler):
    """Appends each entry at once (a reader follows the file while the run goes)."""

    def __init__(self, path: Path) -> None:
        super().__init__(level=logging.DEBUG)
        self._path = path

    def emit(self, record: logging.LogRecord) -> None:
        entry = _entry(record)
        if entry is not None:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"t": record.created, **entry}) + "\n")


def _entry(record: logging.LogRecord) -> dict[str, Any] | None:
    meta = getattr(record, "dagster_meta", None) or {}
    event = meta.get("dagster_event")
    step = meta.get("step_key")
    if event is None:  # a log line of the assets' own
        if record.levelno < logging.INFO:
            return None
        return {"kind": "log", "step": step, "level": record.levelno, "message": redact(meta.get("orig_message") or "")}
    kind = _KINDS.get(event.event_type_value)
    if kind is None:
        return None
    entry: dict[str, Any] = {"kind": kind, "step": step}
    data = event.event_specific_data
    if kind == "materialized":
        materialization = data.materialization
        entry |= {"asset": materialization.asset_key.to_user_string(), "partition": materialization.partition}
    elif kind == "check":
        entry |= {
            "asset": data.asset_key.to_user_string(),
            "check": data.check_name,
            "passed": bool(data.passed),
            "severity": data.severity.value,
            "description": redact(data.description or ""),
        }
    elif kind == "step_failed":
        user = getattr(data, "user_failure_data", None)
        error = getattr(data, "error", None)
        message = getattr(user, "description", None) or getattr(error, "message", None) or "failed"
        entry["message"] = redact(str(message).strip().splitlines()[0] if str(message).strip() else "failed")
    return entry


@dg.logger(
    config_schema={"path": dg.Field(str, default_value="", description="The file to write to; empty: off.")},
    description="A run's progress as JSON lines, for `metaspend demo` and `metaspend backfill --wait`.",
)
def metaspend_progress(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(LOGGER_KEY, level=logging.DEBUG)
    path = init_context.logger_config["path"]
    if path:
        logger.addHandler(_ProgressHandler(Path(path)))
    return logger
