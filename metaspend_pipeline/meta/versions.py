"""Meta's Marketing API versions: when each one expires, and how a version in use stands today.

Plain data, no Dagster. Meta retires a Marketing API version about a year after its release; a call
to an expired version is answered at the oldest live one where the endpoint did not change (with an
`X-Ad-Api-Version-Warning` header), else refused with error #2635.

Source: Meta's "Graph API / Marketing API version history" page
(https://developers.facebook.com/docs/graph-api/changelog/versions) and the Marketing API
changelog, checked on CHECKED_ON. Meta publishes an expiry date once a version's successor is out;
v26.0's and v27.0's were not confirmed here, so they are None and their expiry is *estimated* as
RELEASE_LIFETIME after release (earlier than Meta has ever retired one, so the estimate warns early).
Update the table when Meta publishes new dates: docs/meta-api.md#api-versions says how.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import NamedTuple

CHECKED_ON = dt.date(2026, 12, 6)
SOURCE = (
    "Meta's Graph API / Marketing API version history (developers.facebook.com/docs/graph-api/changelog/versions) "
    f"and the Marketing API changelog, checked {CHECKED_ON}"
)
# A version lived 376 (v23.0) to 398 (v24.0) days: a year is the earliest Meta has retired one.
RELEASE_LIFETIME = dt.timedelta(days=365)
WARN_DAYS = 60  # a version expiring within this many days warns


@dataclass(frozen=True)
class ApiVersion:
    name: str
    released: dt.date | None  # None: not recorded here
    expires: dt.date | None  # Meta's published date; None: not confirmed here

    @property
    def estimated_expiry(self) -> dt.date | None:
        return self.released + RELEASE_LIFETIME if self.expires is None and self.released else None


VERSIONS = (
    ApiVersion("v22.0", None, dt.date(2026, 2, 19)),
    ApiVersion("v23.0", None, dt.date(2026, 6, 9)),
    ApiVersion("v24.0", None, dt.date(2026, 11, 10)),
    ApiVersion("v25.0", None, dt.date(2027, 2, 23)),
    ApiVersion("v26.0", dt.date(2026, 7, 29), None),
    ApiVersion("v27.0", dt.date(2026, 11, 4), None),
)
KNOWN = {v.name: v for v in VERSIONS}

# The default META_API_VERSION, chosen on 2026-12-06: v26.0. v25.0 expires 2027-02-23 and would warn
# from 2026-12-25; v26.0 (released 2026-07-29) is estimated to live until about 2027-07-29 and has
# been out for four months; v27.0 is a month old. Move the default on as docs/meta-api.md says.
DEFAULT_VERSION = "v26.0"

_VERSION = re.compile(r"v([0-9]{1,3})\.([0-9]{1,3})", re.ASCII)


def version_key(name: str) -> tuple[int, int]:
    """v25.0 -> (25, 0), for ordering; ValueError for anything else."""
    match = _VERSION.fullmatch(name)
    if not match:
        raise ValueError(f"{name!r} is not a Marketing API version such as {DEFAULT_VERSION}")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class VersionStatus:
    """How a version stands on a day: `ok`, `warn` or `error`, why, and its expiry."""

    version: str
    level: str
    reason: str
    expires: dt.date | None = None
    estimated: bool = False

    def days_left(self, today: dt.date) -> int | None:
        return (self.expires - today).days if self.expires else None


def version_status(version: str, today: dt.date, warn_days: int = WARN_DAYS) -> VersionStatus:
    """ERROR past Meta's published expiry (or older than every version in the table), WARN within
    `warn_days` of it, or of the estimated expiry of a version whose date is not published yet."""
    known = KNOWN.get(version)
    if known is None:
        return _unknown(version)
    if known.expires is not None:
        left = (known.expires - today).days
        if left <= 0:
            reason = f"{version} expired on {known.expires} (Meta's published date)"
            return VersionStatus(version, "error", reason, known.expires)
        level = "warn" if left <= warn_days else "ok"
        reason = f"{version} expires on {known.expires} (Meta's published date), in {left} day(s)"
        return VersionStatus(version, level, reason, known.expires)
    estimate = known.estimated_expiry
    if estimate is None:
        return VersionStatus(version, "ok", f"{version}: Meta's expiry date is not in the table ({SOURCE})")
    left = (estimate - today).days
    if left <= 0:
        reason = (
            f"{version} was released on {known.released} and Meta retires a version about a year after release: "
            f"it has probably expired (estimated {estimate}); look up its date on Meta's version history page"
        )
    else:
        reason = (
            f"{version} expires about {estimate} (estimated: released {known.released}, Meta's date is not in the "
            f"table), in about {left} day(s)"
        )
    return VersionStatus(version, "warn" if left <= warn_days else "ok", reason, estimate, estimated=True)


def _unknown(version: str) -> VersionStatus:
    key = version_key(version)
    oldest, newest = VERSIONS[0], VERSIONS[-1]
    if key < version_key(oldest.name):
        reason = f"{version} is older than {oldest.name}, which expired on {oldest.expires}"
        return VersionStatus(version, "error", reason)
    if key > version_key(newest.name):
        reason = f"{version} is newer than every version in the table ({SOURCE}): its expiry is not known here"
        return VersionStatus(version, "ok", reason)
    return VersionStatus(version, "warn", f"{version} is not a version Meta published ({SOURCE})")


class ServedVersions(NamedTuple):
    expired: list[str]  # answered at the next live version, with the warning header
    oldest: str  # below it: #2635
    latest: str  # what #2635 says to update to


def as_meta_serves_them(today: dt.date) -> ServedVersions:
    """How Meta treats versions on `today`, for the sandbox (`SandboxConfig`'s version settings): those
    past their published expiry answered at the next live one with the warning header, those older
    than the table refused with #2635 naming the newest. For `metaspend demo` and `sandbox serve`."""
    expired = [v.name for v in VERSIONS if v.expires is not None and v.expires <= today]
    return ServedVersions(expired, VERSIONS[0].name, VERSIONS[-1].name)
