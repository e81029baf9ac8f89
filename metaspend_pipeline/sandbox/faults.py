"""The faults tests and benchmarks inject into the sandbox: what one is, which call it hits, and
what it does to that call.

A fault either answers instead of the endpoint (a Graph error built by `fault_error`; `Sandbox`
itself applies reset, slow and malformed, which act before anything else) or is one of the
`ENDPOINT_FAULTS` the endpoint applies to its own answer: a failed or skipped report run, a
corrupt row (`corrupt`), a foreign `paging.next`, or a connection reset half way through the body
(`broken_midway`). The server's module docstring lists the kinds and their options.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from metaspend_pipeline.sandbox.limits import app_pct, usage_headers
from metaspend_pipeline.sandbox.responses import REDUCE_MESSAGE, GraphError

if TYPE_CHECKING:
    from metaspend_pipeline.sandbox.server import Sandbox

# faults the endpoint itself applies, instead of answering with an error
ENDPOINT_FAULTS = frozenset({"job_failed", "job_skipped", "corrupt_row", "reset_mid_body", "foreign_next"})


@dataclass
class Fault:
    kind: str
    match: str = ""
    times: int = 1
    skip: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Fault:
        """A fault as the admin API and `--fault` write it: its kind, match, times and skip, and
        every other key an option of its kind."""
        options = dict(spec)
        return cls(
            kind=options.pop("kind"),
            match=options.pop("match", ""),
            times=int(options.pop("times", 1)),
            skip=int(options.pop("skip", 0)),
            options=options,
        )


def take_fault(sandbox: Sandbox, method: str, path: str) -> Fault | None:
    """The first fault that matches the call, used up by it (once per `times`, after `skip`
    matching calls went by untouched); report-run faults wait for a report run's POST."""
    with sandbox._lock:
        for fault in sandbox._faults:
            if fault.match and fault.match not in path:
                continue
            if fault.kind in {"job_failed", "job_skipped"} and method != "POST":
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.times -= 1
            if fault.times <= 0:
                sandbox._faults.remove(fault)
            return fault
    return None


def fault_error(sandbox: Sandbox, fault: Fault, headers: dict[str, str]) -> GraphError:
    """The Graph error a fault answers with; a throttle also fills the usage `headers`."""
    o = fault.options
    kind = fault.kind
    if kind == "throttle":
        code = int(o.get("code", 80000))
        minutes = int(o.get("regain_minutes", 1))
        subcode = o.get("subcode", {80000: 2446079, 17: 2446079, 613: 1487742, 4: 1504022}.get(code))
        app_percent = 100.0 if code == 4 else app_pct(sandbox)
        reset = float(o.get("reset_seconds", minutes * 60.0))  # Meta's two hints need not agree
        headers.update(usage_headers(100.0, app_percent, minutes, reset=reset))
        return GraphError(
            int(o.get("http_status", 400)),
            code,
            f"(#{code}) There have been too many calls from this ad-account. Wait a bit and try again.",
            subcode=subcode,
            transient=o.get("is_transient", code == 17 or None),
            headers={"Retry-After": str(o["retry_after"])} if "retry_after" in o else {},
        )
    if kind == "http429":
        extra = {"Retry-After": str(o["retry_after"])} if "retry_after" in o else {}
        return GraphError(429, 4, "(#4) Application request limit reached", headers=extra)
    if kind == "server_error":
        code = int(o.get("code", 1))
        message = {2: "Service temporarily unavailable", 99: "An unknown error occurred"}.get(
            code, "An unknown error occurred"
        )
        return GraphError(
            int(o.get("http_status", 500)),
            code,
            message,
            transient=o.get("is_transient", True if code == 2 else None),
        )
    if kind == "reduce_data":
        return GraphError(500, 1, REDUCE_MESSAGE)
    if kind == "token_expired":
        return GraphError(
            400,
            190,
            "Error validating access token: Session has expired on Tuesday, 01-Jan-2026 00:00:00 PST.",
            subcode=463,
        )
    if kind == "token_invalid":
        return GraphError(
            400,
            190,
            "Error validating access token: The session has been invalidated because "
            "the user changed their password or Facebook has changed the session for security "
            "reasons.",
            subcode=int(o.get("subcode", 460)),
        )
    if kind == "permission":
        return GraphError(
            400,
            int(o.get("code", 10)),
            "(#10) Application does not have permission for this action",
            kind="OAuthException",
        )
    if kind == "unknown_object":
        return GraphError(
            400,
            100,
            "Unsupported get request. Object does not exist, cannot be loaded due to "
            "missing permissions, or does not support this operation",
            subcode=33,
            kind="GraphMethodException",
        )
    return GraphError(500, 1, f"sandbox: unknown fault kind {kind!r}")


def corrupt(item: dict[str, Any], fault: Fault) -> None:
    """A `corrupt_row` fault's change: its field set to its value, or removed when it has none."""
    if fault.options.get("value") is None:
        item.pop(fault.options["field"], None)
    else:
        item[fault.options["field"]] = fault.options["value"]


def broken_midway(response: Response, environ: dict[str, Any]) -> Response:
    """The answer's headers and half its body, then a reset: a connection lost mid-response."""
    body = response.get_data()

    def chunks() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        reset_connection(environ)

    response.response = chunks()
    response.headers["Content-Length"] = str(len(body))
    return response


def reset_connection(environ: dict[str, Any]) -> None:
    """Abort the TCP connection with a reset, as a dropped connection mid-pagination looks."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
