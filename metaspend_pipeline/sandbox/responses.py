"""How the sandbox answers: a JSON body, or Meta's error envelope.

Every other module of the sandbox answers through these two, so they live apart from all of them:
the Graph endpoints, the rate limits and the faults raise `GraphError`, and `Sandbox` turns it into
the answer with the request's usage headers and a trace id.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

# Meta's answer to a page or a report too large to compute in time (code 1, HTTP 500)
REDUCE_MESSAGE = "Please reduce the amount of data you're asking for, then retry your request"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


class GraphError(Exception):
    """A Graph API error: raised anywhere in a call, answered as Meta's `{"error": {...}}`."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        kind: str = "OAuthException",
        transient: bool | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.subcode = status, code, message, subcode
        self.kind, self.transient, self.headers = kind, transient, headers or {}

    def response(self, trace: str) -> Response:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": trace,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        return json_response({"error": error}, self.status, self.headers)
