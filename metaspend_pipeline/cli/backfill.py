"""`metaspend backfill`: the spend assets over a date range, as a Dagster backfill or run now.

Without `--wait` the range becomes an asset backfill in the Dagster instance of DAGSTER_HOME: the
UI lists it under Backfills and the daemon runs it (one run for the range: the assets have
`BackfillPolicy.single_run()`). With `--wait` the same assets run now, in this process, as one run
recorded in that instance, with a line per step and per day instead of Dagster's DEBUG log.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click
import sqlalchemy as sa

from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine, parse_day
from metaspend_pipeline.errors import InvalidInputError, UnknownOrganizationError
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db
from metaspend_pipeline.storage import raw as raw_store
from metaspend_pipeline.storage import spend as spend_store

if TYPE_CHECKING:
    import dagster as dg

Echo = Callable[[str], None]
JOB_NAME = "meta_spend_job"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class BackfillRequest:
    """A validated range of days and the organizations to limit it to (empty: every connected one)."""

    since: dt.date
    until: dt.date
    organizations: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def partition_keys(self) -> list[str]:
        return [(self.since + dt.timedelta(days=i)).isoformat() for i in range(self.days)]

    def run_config(self) -> dict[str, Any]:
        if not self.organizations:
            return {}
        return {"ops": {"meta_raw_insights": {"config": {"organizations": list(self.organizations)}}}}

    def title(self) -> str:
        orgs = f" for {', '.join(self.organizations)}" if self.organizations else ""
        return f"metaspend backfill {self.since} to {self.until}{orgs}"


def validate_range(since: dt.date, until: dt.date, start_date: dt.date, today: dt.date) -> None:
    """The partitions run from META_SPEND_START_DATE to yesterday (UTC): a range outside is an error."""
    if since > until:
        raise InvalidInputError(f"--from {since} is after --to {until}; the range would be empty")
    if since < start_date:
        raise InvalidInputError(
            f"--from {since} is before META_SPEND_START_DATE ({start_date}), the first partition; "
            "set META_SPEND_START_DATE earlier to load older days"
        )
    yesterday = today - dt.timedelta(days=1)
    if until > yesterday:
        raise InvalidInputError(f"--to {until} is not over yet: the last partition is yesterday, {yesterday} (UTC)")


def dagster_instance() -> dg.DagsterInstance:
    """The Dagster instance of DAGSTER_HOME, where the UI and the daemon look."""
    import dagster as dg
    from dagster._core.errors import DagsterHomeNotSetError

    try:
        return dg.DagsterInstance.get()
    except DagsterHomeNotSetError:
        raise InvalidInputError(
            "DAGSTER_HOME is not set: a backfill is recorded in a Dagster instance; export DAGSTER_HOME as a "
            "directory of its own with a dagster.yaml (deploy/dagster.yaml in production)"
        ) from None


def _definitions() -> dg.Definitions:
    with warnings.catch_warnings():
        # The project's own beta and superseded APIs warn on import; the CLI's output stays clean.
        warnings.simplefilter("ignore")
        from metaspend_pipeline.definitions import load

        return load()


def _spend_assets() -> list[dg.AssetKey]:
    from metaspend_pipeline.defs.meta_spend.jobs import SPEND_ASSETS

    return list(SPEND_ASSETS)


def submit(instance: dg.DagsterInstance, request: BackfillRequest) -> str:
    """Add an asset backfill of the spend assets over the range; the daemon launches its run."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    defs = _definitions()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=request.partition_keys(),
        asset_selection=_spend_assets(),
        backfill_timestamp=time.time(),
        tags={"metaspend/command": "backfill"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=request.title(),
        description=f"{request.days} day(s) of {JOB_NAME}'s assets, submitted by `metaspend backfill`.",
        run_config=request.run_config() or None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


@dataclass
class Summary:
    """What a run wrote, read back from the warehouse and the fetch log."""

    days: int
    spend_rows: int = 0
    raw_rows: int = 0
    meta_requests: int = 0
    spend_by_currency: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        spend = ", ".join(f"{c} {v:,.2f}" for c, v in sorted(self.spend_by_currency.items())) or "none"
        lines = [
            f"days: {self.days}",
            f"rows: {self.spend_rows} in meta_spend_daily ({self.raw_rows} insight rows fetched)",
            f"spend (campaign level): {spend}",
            f"Meta requests: {self.meta_requests}",
        ]
        lines += [f"failed: {failure}" for failure in self.failures]
        return lines


def summarize(conn: sa.Connection, run_id: str, request: BackfillRequest) -> Summary:
    summary = Summary(days=request.days)
    organizations: Sequence[str] | None = request.organizations or None
    summary.spend_rows, spend = spend_store.spend_summary(conn, request.since, request.until, organizations)
    summary.spend_by_currency.update(spend)
    for outcome in raw_store.fetches_of_run(conn, run_id):
        summary.raw_rows += outcome.rows
        summary.meta_requests += outcome.requests
        if outcome.status != "OK":
            where = f"organization {outcome.organization_id}" + (
                f", ad account {outcome.ad_account_id}" if outcome.ad_account_id else ""
            )
            summary.failures.append(f"{where}: {outcome.error}")
    return summary


class _Progress(threading.Thread):
    """Reads the run's events from the instance as they are stored and echoes what a person wants to
    know: steps starting and ending (with the days each wrote), the assets' own log lines (the
    fetch's progress per ad account), failures. Not Dagster's DEBUG events."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, echo: Echo) -> None:
        super().__init__(daemon=True)
        self._instance, self._run_id, self._echo = instance, run_id, echo
        self._done = threading.Event()
        self._cursor: str | None = None
        self._t0 = time.monotonic()
        self._written: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))

    def _say(self, message: str) -> None:
        self._echo(redact(f"[{time.monotonic() - self._t0:6.1f}s] {message}"))

    def _handle(self, entry: Any) -> None:
        from dagster import DagsterEventType

        event = entry.dagster_event
        if event is None:  # a log line of the assets' own
            if entry.level >= logging.INFO and entry.user_message:
                self._say(f"{entry.step_key}: {entry.user_message}" if entry.step_key else entry.user_message)
            return
        kind, step = event.event_type, event.step_key or ""
        if kind == DagsterEventType.STEP_START:
            self._say(f"{step}: started")
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            # a set: Dagster may store more than one event per day
            self._written[step][materialization.asset_key.to_user_string()].add(materialization.partition or "")
        elif kind == DagsterEventType.STEP_SUCCESS:
            written = "; ".join(
                f"{'' if asset == step else asset + ' '}{len(days)} day(s) written ({min(days)}..{max(days)})"
                for asset, days in self._written.pop(step, {}).items()
            )
            self._say(f"{step}: done" + (f", {written}" if written else ""))
        elif kind == DagsterEventType.STEP_FAILURE:
            failure = event.step_failure_data
            user = failure.user_failure_data
            message = user.description if user and user.description else failure.error.message if failure.error else ""
            self._say(f"{step}: FAILED: {(message.strip().splitlines() or ['failed'])[0]}")
        elif kind == DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed:
            evaluation = event.event_specific_data
            self._say(f"{step}: check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} FAILED")

    def drain(self) -> None:
        while True:
            connection = self._instance.get_records_for_run(self._run_id, cursor=self._cursor, limit=500)
            for record in connection.records:
                self._handle(record.event_log_entry)
            self._cursor = connection.cursor
            if not connection.has_more:
                return

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.drain()

    def finish(self) -> None:
        self._done.set()
        self.join()
        self.drain()


def run_now(instance: dg.DagsterInstance, request: BackfillRequest, echo: Echo) -> tuple[bool, str]:
    """Run the spend assets over the range now, as one run recorded in `instance`; (success, run id)."""
    defs = _definitions()
    job = defs.resolve_job_def(JOB_NAME)
    run_id = str(uuid.uuid4())
    run_config: dict[str, Any] = {
        **request.run_config(),
        # Dagster's console log prints every event at DEBUG; the progress lines replace it.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
    }
    progress = _Progress(instance, run_id, echo)
    progress.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = job.execute_in_process(
                run_config=run_config,
                instance=instance,
                run_id=run_id,
                raise_on_error=False,
                tags={
                    RANGE_START_TAG: request.since.isoformat(),
                    RANGE_END_TAG: request.until.isoformat(),
                    "metaspend/command": "backfill --wait",
                },
            )
    finally:
        progress.finish()
    return result.success, run_id


@cli.command("backfill")
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (a partition: a UTC day).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive; at the latest yesterday.")
@click.option("--org", "organizations", multiple=True, help="Only this organization; repeat for several.")
@click.option("--wait", is_flag=True, help="Run it now in this process and wait, instead of submitting it.")
def backfill_command(since: str, until: str, organizations: tuple[str, ...], wait: bool) -> None:
    """Load a date range of spend and ROAS: a Dagster backfill the daemon runs, or with --wait, now.

    Either way it is one run of meta_spend_job's assets, recorded in the Dagster instance of
    DAGSTER_HOME (the UI shows it).
    """
    settings = load_settings()
    first, last = parse_day(since, "--from"), parse_day(until, "--to")
    validate_range(first, last, settings.spend_start_date, db.utcnow().date())
    orgs = tuple(dict.fromkeys(store.validate_organization_id(o) for o in organizations))
    engine = migrated_engine(settings)
    if orgs:
        with engine.connect() as conn:
            connected = set(store.connected_organizations(conn))
        unknown = [o for o in orgs if o not in connected]
        if unknown:
            raise UnknownOrganizationError(
                f"organization {', '.join(unknown)} has no CONNECTED Meta account; see `metaspend accounts list`"
            )
    request = BackfillRequest(first, last, orgs)
    with dagster_instance() as instance:
        if not wait:
            backfill_id = submit(instance, request)
            click.echo(
                f"submitted backfill {backfill_id}: {request.title()} ({request.days} day(s), one run); "
                "the Dagster daemon runs it, the UI shows it under Backfills"
            )
            return
        click.echo(f"{request.title()}: {request.days} day(s) in one run", err=True)
        ok, run_id = run_now(instance, request, lambda line: click.echo(line, err=True))
    with engine.connect() as conn:
        summary = summarize(conn, run_id, request)
    click.echo(f"run {run_id}: {'succeeded' if ok else 'FAILED'}")
    for line in summary.lines():
        click.echo(redact(line))
    if not ok:
        click.get_current_context().exit(1)
