"""Talking to a running sandbox's admin endpoints (`/__sandbox/`): for the demo, the CLI, tests and
benchmarks."""

from __future__ import annotations

from typing import Any

import requests

from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import register_secret


class SandboxAdmin:
    """The sandbox's `/__sandbox/` endpoints."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = requests.request(method, f"{self.url}/__sandbox/{path}", timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise MetaspendError(
                f"no Meta sandbox answers at {self.url}; start one with `metaspend sandbox serve`"
            ) from None
        response.raise_for_status()
        return response.json()

    def organizations(self) -> list[dict[str, Any]]:
        organizations = self._call("GET", "organizations")
        for org in organizations:
            register_secret(org["token"])
        return organizations

    def add_faults(self, *faults: dict[str, Any]) -> None:
        self._call("POST", "faults", json=list(faults))

    def reset(self) -> None:
        self._call("DELETE", "faults")

    def configure(self, **changes: Any) -> None:
        self._call("POST", "config", json=changes)

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "requests")

    def truth(self, ad_account: str, level: str, since: str, until: str) -> list[dict[str, Any]]:
        params = {"ad_account": ad_account, "level": level, "since": since, "until": until}
        return self._call("GET", "truth", params=params)["rows"]

    def conversion_truth(
        self, ad_account: str, level: str, since: str, until: str, windows: str = "7d_click,1d_view"
    ) -> list[dict[str, Any]]:
        """The `meta_conversions_daily` rows a fetch asking for `windows` must produce."""
        params = {"ad_account": ad_account, "level": level, "since": since, "until": until}
        params |= {"kind": "conversions", "windows": windows}
        return self._call("GET", "truth", params=params)["rows"]

    def breakdown_truth(
        self, ad_account: str, level: str, since: str, until: str, breakdown: str
    ) -> list[dict[str, Any]]:
        """The daily rows broken down by `breakdown` (`age_gender`, `country`, `placement`) a
        complete fetch must produce: spend as text, impressions and clicks as numbers."""
        params = {"ad_account": ad_account, "level": level, "since": since, "until": until}
        params |= {"kind": "breakdown", "breakdown": breakdown}
        return self._call("GET", "truth", params=params)["rows"]

    def reach_truth(self, ad_account: str, level: str, since: str, until: str) -> list[dict[str, Any]]:
        """Reach (a number) and frequency (text) per object over the whole range, as one
        `time_increment=all_days` request answers them, every status."""
        params = {"ad_account": ad_account, "level": level, "since": since, "until": until, "kind": "reach"}
        return self._call("GET", "truth", params=params)["rows"]

    def objects(self, ad_account: str, kind: str) -> list[dict[str, Any]]:
        """Every campaign, ad set or ad of the ad account, archived and deleted included."""
        return self._call("GET", "objects", params={"ad_account": ad_account, "kind": kind})[kind]

    def rename(self, object_id: str, name: str) -> None:
        self._call("POST", "objects", json={"id": object_id, "name": name})

    def add_token(self, token: str, organization_id: str, **options: Any) -> None:
        register_secret(token)
        self._call("POST", "tokens", json={"token": token, "organization_id": organization_id, **options})
