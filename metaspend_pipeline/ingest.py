"""Fetching Meta's insights into `meta_raw_insights`, organization by organization.

Plain Python under the `meta_raw_insights` asset. A date range is fetched with
`time_increment=1`, one window of at most `window_days` days at a time, so a long backfill costs
about one page per `page_size` rows per level instead of one request set per day. Each (ad
account, level, window) is spooled to a temporary file while it streams in and then replaces its
rows in one short transaction: memory stays flat, and a fetch that fails half-way leaves the rows
that were there.

Ad accounts are fetched `concurrency` at a time (META_FETCH_CONCURRENCY), one thread and one
client per ad account, since Meta's limits are per ad account; the app-wide usage is shared
through the clients' one `AppPacer`. Organizations' tokens are looked up one organization at a
time before the fetches start.

One organization's failure (no token, a rejected token, a Meta error) is recorded and the others
go on; a rejected token marks its connected account NEEDS_REAUTH, and its other ad accounts not
yet started are not tried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from metaspend_pipeline import objects
from metaspend_pipeline.credentials import MetaAdAccount
from metaspend_pipeline.errors import MetaspendError
from metaspend_pipeline.meta.client import ClientStats
from metaspend_pipeline.meta.errors import MetaDataError, MetaTokenError
from metaspend_pipeline.meta.models import BREAKDOWN_SETS, InsightRow
from metaspend_pipeline.meta.parsing import parse_insight_row
from metaspend_pipeline.redaction import get_logger, redact
from metaspend_pipeline.storage import breakdowns as breakdown_store
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import reach as reach_store
from metaspend_pipeline.storage.db import utcnow

LEVELS = ("account", "campaign", "adset", "ad")
SPOOL_MEMORY_BYTES = 4 * 1024 * 1024

log = get_logger(__name__)


_SQLITE_WRITERS: dict[str, threading.Lock] = defaultdict(threading.Lock)
_SQLITE_WRITERS_GUARD = threading.Lock()


@contextlib.contextmanager
def _one_writer(engine: sa.Engine) -> Iterator[None]:
    """On SQLite, the fetch's threads write to a database one at a time, queued here rather than on
    SQLite's lock, whose busy timeout a long write of another thread could outlast. PostgreSQL
    writes in parallel."""
    if engine.dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITERS_GUARD:
        writer = _SQLITE_WRITERS[str(engine.url)]
    with writer:
        yield


def windows(since: dt.date, until: dt.date, days: int) -> Iterator[tuple[dt.date, dt.date]]:
    """[since, until] cut into consecutive windows of at most `days` days."""
    start = since
    while start <= until:
        end = min(until, start + dt.timedelta(days=days - 1))
        yield start, end
        start = end + dt.timedelta(days=1)


@dataclass
class IngestReport:
    """What a fetch did, for Dagster metadata and the run's failure message."""

    outcomes: list[raw_store.FetchOutcome] = field(default_factory=list)
    stats: ClientStats = field(default_factory=ClientStats)
    rows_by_day_level: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    spend_by_day_currency: dict[tuple[dt.date, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fetch_wall_seconds: float = 0.0
    concurrency: int = 1  # threads the fetch used: META_FETCH_CONCURRENCY, at most one per ad account

    def merge(self, other: IngestReport) -> None:
        """Add one ad account's numbers (counted in its own thread) to the run's."""
        self.outcomes.extend(other.outcomes)
        self.stats.add(other.stats)
        for key, count in other.rows_by_day_level.items():
            self.rows_by_day_level[key] += count
        for key, amount in other.spend_by_day_currency.items():
            self.spend_by_day_currency[key] += amount

    @property
    def meta_wait_seconds(self) -> float:
        """Waiting on Meta, summed over the threads: answers, report runs, pauses for its limits."""
        return self.stats.meta_wait_seconds

    @property
    def meta_wait_share(self) -> float:
        """The share of the threads' time (wall time x threads) spent waiting on Meta."""
        busy = self.fetch_wall_seconds * self.concurrency
        return min(1.0, self.meta_wait_seconds / busy) if busy > 0 else 0.0

    @property
    def failures(self) -> list[raw_store.FetchOutcome]:
        return [o for o in self.outcomes if o.status == "FAILED"]

    @property
    def accounts_fetched(self) -> int:
        return len({(o.organization_id, o.ad_account_id) for o in self.outcomes if o.status == "OK"})

    @property
    def failed_organizations(self) -> list[str]:
        return sorted({o.organization_id for o in self.failures})


class _Spool:
    """Rows of one (ad account, level, window[, breakdown]) on their way to the database: memory, then
    disk.

    A row Meta sends twice for the same day, object (and breakdown values) is refused here, before
    anything is replaced, naming the ad account, the day and the ids.
    """

    def __init__(
        self, account: str, level: str, since: dt.date, until: dt.date, breakdown: tuple[str, ...] = ()
    ) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, mode="w+", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._where = (account, level, since, until)
        self._breakdown = breakdown
        self._seen: set[tuple[object, ...]] = set()
        self.count = 0

    def add(self, row: InsightRow) -> None:
        key = (row.date, row.campaign_id, row.adset_id, row.ad_id, *row.breakdown)
        if key in self._seen:
            values = f" ({', '.join(f'{n} {v}' for n, v in zip(self._breakdown, row.breakdown, strict=True))})"
            raise MetaDataError(
                f"ad account {row.ad_account_id}, {row.level} row of {row.date}: Meta returned campaign "
                f"{row.campaign_id}, ad set {row.adset_id}, ad {row.ad_id}{values if row.breakdown else ''} twice",
                ad_account_id=row.ad_account_id,
            )
        self._seen.add(key)
        self._file.write(json.dumps(row.raw, separators=(",", ":")) + "\n")
        self.count += 1

    def rows(self) -> Iterator[InsightRow]:
        """The rows again, parsed by the same parser that validated them (their conversion lists,
        validated on the way in and stored only as Meta sent them, are not parsed twice)."""
        account, level, since, until = self._where
        self._file.seek(0)
        for line in self._file:
            yield parse_insight_row(
                json.loads(line), account, level, since, until, conversions=False, breakdown=self._breakdown
            )

    def close(self) -> None:
        self._file.close()


def fetch_account(
    engine: sa.Engine,
    account: MetaAdAccount,
    since: dt.date,
    until: dt.date,
    window_days: int,
    report: IngestReport,
) -> int:
    """Fetch every level of one ad account over [since, until] into `meta_raw_insights`."""
    client = account.client
    info = client.ad_account(account.ad_account_id)
    with _one_writer(engine), engine.begin() as conn:
        raw_store.upsert_ad_account(
            conn,
            ad_account_id=info.id,
            name=info.name,
            currency=info.currency,
            timezone_name=info.timezone_name,
            timezone_offset_hours_utc=info.timezone_offset_hours_utc,
        )
    total = 0
    for start, end in windows(since, until, window_days):
        for level in LEVELS:
            spool = _Spool(account.ad_account_id, level, start, end)
            rows_by_day: dict[dt.date, int] = defaultdict(int)
            spend_by_day: dict[tuple[dt.date, str], Decimal] = defaultdict(Decimal)
            try:
                for row in client.insights(account.ad_account_id, level, start, end):
                    spool.add(row)
                    rows_by_day[row.date] += 1
                    if level == "account":
                        spend_by_day[(row.date, row.currency)] += row.spend
                with _one_writer(engine), engine.begin() as conn:
                    raw_store.replace_raw_insights(
                        conn,
                        organization_id=account.organization_id,
                        provider=account.provider,
                        ad_account_id=account.ad_account_id,
                        level=level.upper(),
                        since=start,
                        until=end,
                        rows=spool.rows(),
                        fetched_at=utcnow(),
                    )
                total += spool.count
            finally:
                spool.close()
            for day, count in rows_by_day.items():
                report.rows_by_day_level[(day, level.upper())] += count
            for key, amount in spend_by_day.items():
                report.spend_by_day_currency[key] += amount
    objects.refresh_account(engine, account, utcnow(), since, until)  # never raises: spend is already stored
    return total


# What is fetched for one ad account, into the report: returns the rows stored
AccountFetch = Callable[[sa.Engine, MetaAdAccount, "IngestReport"], int]


def fetch_breakdowns(
    engine: sa.Engine,
    account: MetaAdAccount,
    report: IngestReport,
    *,
    since: dt.date,
    until: dt.date,
    window_days: int,
    breakdowns: Sequence[str],
    levels: Sequence[str],
) -> int:
    """Fetch the breakdown sets of one ad account over [since, until] into `meta_raw_breakdowns`: per
    window, level and set one request series (`breakdowns=...`, `time_increment=1`, async where large),
    like the daily insights; each (level, set, window) replaces its raw rows in one transaction."""
    client = account.client
    total = 0
    for start, end in windows(since, until, window_days):
        for level in levels:
            for name in breakdowns:
                fields = BREAKDOWN_SETS[name]
                spool = _Spool(account.ad_account_id, level, start, end, fields)
                rows_by_day: dict[dt.date, int] = defaultdict(int)
                try:
                    for row in client.insights(account.ad_account_id, level, start, end, breakdown=fields):
                        spool.add(row)
                        rows_by_day[row.date] += 1
                    with _one_writer(engine), engine.begin() as conn:
                        breakdown_store.replace_raw_breakdowns(
                            conn,
                            organization_id=account.organization_id,
                            provider=account.provider,
                            ad_account_id=account.ad_account_id,
                            breakdown=name,
                            level=level.upper(),
                            since=start,
                            until=end,
                            rows=spool.rows(),
                            fetched_at=utcnow(),
                        )
                    total += spool.count
                finally:
                    spool.close()
                for day, count in rows_by_day.items():
                    report.rows_by_day_level[(day, f"{name}:{level.upper()}")] += count
    return total


def fetch_reach(
    engine: sa.Engine,
    account: MetaAdAccount,
    report: IngestReport,
    *,
    period: str,
    period_start: dt.date,
    period_end: dt.date,
    levels: Sequence[str],
) -> int:
    """Fetch one ad account's reach over the whole period [period_start, period_end] into
    `meta_raw_reach`: one request series per level (`time_increment=all_days`), never a sum of days;
    each level replaces its rows of the period in one transaction."""
    client = account.client
    total = 0
    for level in levels:
        rows = list(client.reach(account.ad_account_id, level, period_start, period_end))
        seen: set[tuple[str | None, ...]] = set()
        for row in rows:
            key = (row.campaign_id, row.adset_id, row.ad_id)
            if key in seen:
                raise MetaDataError(
                    f"ad account {account.ad_account_id}, {level} reach of {period_start}..{period_end}: Meta "
                    f"returned campaign {row.campaign_id}, ad set {row.adset_id}, ad {row.ad_id} twice",
                    ad_account_id=account.ad_account_id,
                )
            seen.add(key)
        with _one_writer(engine), engine.begin() as conn:
            total += reach_store.replace_raw_reach(
                conn,
                organization_id=account.organization_id,
                provider=account.provider,
                ad_account_id=account.ad_account_id,
                period=period,
                level=level.upper(),
                period_start=period_start,
                rows=rows,
                fetched_at=utcnow(),
            )
        report.rows_by_day_level[(period_start, level.upper())] += len(rows)
    return total


def fetch_organizations(
    engine: sa.Engine,
    organizations: Sequence[str],
    accounts_of: Callable[[str], list[MetaAdAccount]],
    mark_needs_reauth: Callable[[str | None], None],
    since: dt.date,
    until: dt.date,
    *,
    run_id: str,
    window_days: int,
    concurrency: int = 1,
    only_ad_accounts: Iterable[str] | None = None,
    on_account_done: Callable[[MetaAdAccount], None] | None = None,
    fetch: AccountFetch | None = None,
    report_kind: str = "spend",
) -> IngestReport:
    """Fetch every organization's ad accounts, `concurrency` at a time; failures are recorded,
    never fatal to the others. `fetch` is what is fetched per ad account (default: every level of
    the daily insights, `fetch_account`), logged in `meta_fetch_log` as `report_kind`."""
    if fetch is None:

        def fetch(engine: sa.Engine, account: MetaAdAccount, report: IngestReport) -> int:
            return fetch_account(engine, account, since, until, window_days, report)

    started = time.monotonic()
    report = IngestReport()
    wanted = set(only_ad_accounts or ())
    lock = threading.Lock()
    rejected: dict[str | None, MetaTokenError] = {}
    pending: list[MetaAdAccount] = []
    for organization_id in organizations:
        try:
            accounts = accounts_of(organization_id)
        except Exception as exc:  # noqa: BLE001 - one organization's failure must not stop the others
            for connected_account_id in getattr(exc, "expired_accounts", ()):
                mark_needs_reauth(connected_account_id)
            _record(engine, run_id, report, organization_id, None, since, until, None, exc, report_kind)
            continue
        pending.extend(a for a in accounts if not wanted or a.ad_account_id in wanted)

    report.concurrency = max(1, min(concurrency, len(pending)))

    def fetch_one(account: MetaAdAccount) -> None:
        own = IngestReport()
        with lock:
            token_error = rejected.get(account.connected_account_id)
        if token_error is not None:
            # the same token was just rejected: its other ad accounts would fail the same way
            _record(engine, run_id, own, account.organization_id, account, since, until, None, token_error, report_kind)
        else:
            try:
                rows = fetch(engine, account, own)
            except MetaTokenError as exc:
                with lock:
                    first = account.connected_account_id not in rejected
                    rejected.setdefault(account.connected_account_id, exc)
                if first:
                    mark_needs_reauth(account.connected_account_id)
                _record(engine, run_id, own, account.organization_id, account, since, until, None, exc, report_kind)
            except Exception as exc:  # noqa: BLE001 - one ad account's failure must not stop the others
                _record(engine, run_id, own, account.organization_id, account, since, until, None, exc, report_kind)
            else:
                _record(engine, run_id, own, account.organization_id, account, since, until, rows, None, report_kind)
            own.stats.add(account.client.stats)
        with lock:
            report.merge(own)
        if on_account_done is not None:
            on_account_done(account)

    if report.concurrency == 1:  # also when at most one ad account is pending (see above)
        for account in pending:
            fetch_one(account)
    else:
        with ThreadPoolExecutor(max_workers=report.concurrency, thread_name_prefix="meta-fetch") as pool:
            for future in [pool.submit(fetch_one, account) for account in pending]:
                future.result()
    report.outcomes.sort(key=lambda o: (o.organization_id, o.ad_account_id or ""))
    report.fetch_wall_seconds = time.monotonic() - started
    return report


def _record(
    engine: sa.Engine,
    run_id: str,
    report: IngestReport,
    organization_id: str,
    account: MetaAdAccount | None,
    since: dt.date,
    until: dt.date,
    rows: int | None,
    error: Exception | None,
    report_kind: str = "spend",
) -> None:
    stats = account.client.stats if account is not None else ClientStats()
    message = None
    if error is not None:
        where = f"organization {organization_id}" + (f", ad account {account.ad_account_id}" if account else "")
        reason = str(error) if isinstance(error, MetaspendError) else f"{type(error).__name__}: {error}"
        message = redact(f"{where}: {reason}")
        if isinstance(error, MetaTokenError) or getattr(error, "expired_accounts", ()):
            message += "; its connected account is now NEEDS_REAUTH (reconnect it with `metaspend accounts connect`)"
        log.error("%s", message)
    outcome = raw_store.FetchOutcome(
        organization_id=organization_id,
        ad_account_id=account.ad_account_id if account else None,
        since=since,
        until=until,
        status="FAILED" if error is not None else "OK",
        error=message,
        rows=rows or 0,
        requests=stats.requests,
        throttle_wait_seconds=stats.throttle_wait_seconds + stats.pacing_wait_seconds + stats.app_pacing_wait_seconds,
        report=report_kind,
    )
    report.outcomes.append(outcome)
    with _one_writer(engine), engine.begin() as conn:
        raw_store.log_fetch(conn, run_id, outcome)
