"""The sandbox's rate limits, as Meta's: a sliding call window per ad account and one for the app.

`rate_limit_calls` per ad account in any `rate_limit_window_seconds` is the business-use-case
limit (code 80000 beyond it); `app_rate_limit_calls` in any `app_rate_limit_window_seconds` is the
app's (code 4 beyond it). Every call on an ad account reports both in the usage headers Meta sends
(X-Business-Use-Case-Usage, X-Ad-Account-Usage, X-App-Usage, X-FB-Ads-Insights-Throttle), which
is what the pipeline's pacing reads; a throttle fault (`faults.py`) reports a full window in them.
The windows themselves are the sandbox's state (`Sandbox._calls`, `Sandbox._app_calls`).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from metaspend_pipeline.sandbox.responses import GraphError

if TYPE_CHECKING:
    from metaspend_pipeline.sandbox.faults import Fault
    from metaspend_pipeline.sandbox.server import Sandbox


def usage_headers(
    account_pct: float,
    app_pct: float,
    regain_minutes: int,
    reset: float,
    account: str | None = None,
) -> dict[str, str]:
    business = (account or "act_0").removeprefix("act_")
    return {
        "X-App-Usage": json.dumps(
            {
                "call_count": round(app_pct),
                "total_time": round(app_pct * 0.6),
                "total_cputime": round(app_pct * 0.5),
            }
        ),
        "X-Ad-Account-Usage": json.dumps(
            {
                "acc_id_util_pct": round(account_pct, 2),
                "reset_time_duration": math.ceil(reset),
                "ads_api_access_tier": "standard_access",
            }
        ),
        "X-Business-Use-Case-Usage": json.dumps(
            {
                business: [
                    {
                        "type": "ads_insights",
                        "call_count": round(account_pct),
                        "total_cputime": round(account_pct * 0.5),
                        "total_time": round(account_pct * 0.6),
                        "estimated_time_to_regain_access": regain_minutes,
                        "ads_api_access_tier": "standard_access",
                    }
                ]
            }
        ),
        "X-FB-Ads-Insights-Throttle": json.dumps(
            {
                "app_id_util_pct": round(app_pct, 2),
                "acc_id_util_pct": round(account_pct, 2),
                "ads_api_access_tier": "standard_access",
            }
        ),
    }


def app_pct(sandbox: Sandbox) -> float:
    """How full the app's window is, in percent."""
    with sandbox._lock:
        return 100.0 * len(sandbox._app_calls) / max(1, sandbox.config.app_rate_limit_calls)


def account_usage(sandbox: Sandbox, account: str, throttle: Fault | None) -> dict[str, str]:
    """Count the call in a sliding window per ad account and one for the app; refuse it when
    either is full (80000 for the ad account, 4 for the app, as Meta does)."""
    now = sandbox._clock()
    window = sandbox.config.rate_limit_window_seconds
    capacity = max(1, sandbox.config.rate_limit_calls)
    app_window = sandbox.config.app_rate_limit_window_seconds
    app_capacity = max(1, sandbox.config.app_rate_limit_calls)
    with sandbox._lock:
        calls = sandbox._calls[account]
        app_calls = sandbox._app_calls
        while calls and calls[0] <= now - window:
            calls.popleft()
        while app_calls and app_calls[0] <= now - app_window:
            app_calls.popleft()
        app_percent = 100.0 * len(app_calls) / app_capacity
        if len(calls) >= capacity:
            wait = calls[0] + window - now
            headers = usage_headers(
                100.0,
                app_percent,
                math.ceil(wait / 60),
                calls[-1] + window - now,
                account,
            )
            raise GraphError(
                400,
                80000,
                "(#80000) There have been too many calls from this ad-account. Wait a "
                "bit and try again. For more info, please refer to "
                "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
                subcode=2446079,
                headers=headers,
            )
        if len(app_calls) >= app_capacity:
            headers = usage_headers(
                100.0 * len(calls) / capacity, 100.0, 0, (calls[-1] + window - now) if calls else 0.0, account
            )
            raise GraphError(400, 4, "(#4) Application request limit reached", transient=True, headers=headers)
        if throttle is None or throttle.kind != "throttle":
            calls.append(now)
            app_calls.append(now)
        pct = 100.0 * len(calls) / capacity
        app_percent = 100.0 * len(app_calls) / app_capacity
        reset = (calls[-1] + window - now) if calls else 0.0
    return usage_headers(pct, app_percent, 0, reset, account)
