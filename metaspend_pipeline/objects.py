"""Names and attributes of campaigns, ad sets and ads, from Meta's object edges. Plain Python.

`fetch_objects` asks `/act_{id}/campaigns`, `/adsets` and `/ads` for every effective status
(archived and deleted included): 3 requests per ad account, plus one per further page of
`META_PAGE_SIZE` objects. `refresh_account`, called once per ad account by every fetch of
insights, does that only when the names are due:
- never fetched, or fetched more than META_OBJECTS_REFRESH_HOURS (24) ago: a rename shows within
  a day;
- or an ad in the insights just fetched is not in `meta_ad` (a new ad gets its name in the same
  run).
Otherwise it costs no request. A failure is logged and leaves the spend fetch alone; the next
run tries again, since the names are still due.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field

import sqlalchemy as sa

from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.redaction import get_logger, redact
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import objects as store
from metaspend_pipeline.storage.db import utcnow
from metaspend_pipeline.storage.schema import OBJECT_KINDS

BATCH_OBJECTS = 1000

log = get_logger(__name__)


@dataclass
class ObjectsRefresh:
    """What `refresh_account` did for one ad account."""

    reason: str | None = None  # why the names were fetched; None: they were fresh
    counts: dict[str, int] = field(default_factory=dict)  # objects stored per kind
    requests: int = 0
    error: str | None = None


def fetch_objects(engine: sa.Engine, account: MetaAdAccount, now: dt.datetime | None = None) -> dict[str, int]:
    """Fetch the ad account's campaigns, ad sets and ads (every status) and upsert them.

    Objects are written as they stream in, a batch per short transaction: no transaction is
    held open across a request to Meta.
    """
    seen_at = now or utcnow()
    counts: dict[str, int] = {}
    for kind in OBJECT_KINDS:
        stream = account.client.objects(account.ad_account_id, kind)
        counts[kind] = 0
        while batch := list(itertools.islice(stream, BATCH_OBJECTS)):
            with engine.begin() as conn:
                counts[kind] += store.upsert_objects(conn, account.organization_id, kind, batch, seen_at)
    return counts


def due(
    engine: sa.Engine,
    account: MetaAdAccount,
    now: dt.datetime,
    refresh_hours: float,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> str | None:
    """Why the ad account's names should be fetched now, or None when they are fresh."""
    with engine.connect() as conn:
        last = store.last_refreshed(conn, account.organization_id, account.ad_account_id)
        if last is None:
            return "never fetched"
        if now - last >= dt.timedelta(hours=refresh_hours):
            return f"last fetched {last:%Y-%m-%d %H:%M} UTC, over META_OBJECTS_REFRESH_HOURS={refresh_hours:g}h ago"
        if since is not None and until is not None:
            unknown = store.unknown_ads(conn, account.organization_id, account.ad_account_id, since, until)
            if unknown:
                return f"{unknown} ads in the insights of {since}..{until} are new"
    return None


def refresh_account(
    engine: sa.Engine,
    account: MetaAdAccount,
    now: dt.datetime,
    since: dt.date | None = None,
    until: dt.date | None = None,
    *,
    refresh_hours: float | None = None,
) -> ObjectsRefresh:
    """Fetch the ad account's names if they are due (see the module's docstring). Never raises:
    the names must not cost the spend fetch that calls this."""
    where = f"organization {account.organization_id}, ad account {account.ad_account_id}"
    result = ObjectsRefresh()
    before = account.client.stats.requests
    try:
        hours = Settings.from_env().objects_refresh_hours if refresh_hours is None else refresh_hours
        result.reason = due(engine, account, now, hours, since, until)
        if result.reason is not None:
            result.counts = fetch_objects(engine, account, now)
            log.info("%s: names of %s fetched (%s)", where, _counts(result.counts), result.reason)
    except Exception as exc:  # noqa: BLE001 - the spend fetch goes on whatever happens to the names
        reason = str(exc) if isinstance(exc, MetaspendError) else f"{type(exc).__name__}: {exc}"
        result.error = redact(f"{where}: names of campaigns, ad sets and ads not refreshed: {reason}")
        log.error("%s (spend is unaffected; the next run tries again)", result.error)
    result.requests = account.client.stats.requests - before
    return result


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}s" for kind, n in counts.items())
