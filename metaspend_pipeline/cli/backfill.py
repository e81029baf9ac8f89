"""`metaspend backfill`: the spend assets over a date range, as a Dagster backfill or run now.

Without `--wait` the range becomes an asset backfill submitted to the Dagster webserver through its
GraphQL API (`launchPartitionBackfill`, the interface the UI itself uses): the UI lists it under
Backfills and the daemon runs it (one run for the range: the assets have `BackfillPolicy.single_run()`).
With `--wait` the same assets run now, in this process, as one run recorded in the instance of
DAGSTER_HOME, with a line per step and per ad account instead of Dagster's DEBUG log. Both use public
Dagster interfaces only.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
import time
import urllib.parse
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import requests
import sqlalchemy as sa

from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine, parse_day
from metaspend_pipeline.cli.progress import CheckVerdict, RunProgress
from metaspend_pipeline.errors import InvalidInputError, MetaspendError, UnknownOrganizationError
from metaspend_pipeline.meta.lookback import INSIGHTS, RangeTooOldError, refuse_too_old
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.safe_text import safe_text
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
SUBMIT_TIMEOUT_SECONDS = 120.0  # the webserver resolves the asset graph and writes the backfill

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


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
    """The partitions run from META_SPEND_START_DATE to yesterday (UTC), and Meta serves the last 37
    months: a range outside is an error, before anything is submitted or asked of Meta."""
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
    try:
        refuse_too_old(since, until, today, INSIGHTS)
    except RangeTooOldError as exc:
        raise RangeTooOldError(f"--from {since}: {exc}") from None


def _graphql_url(dagster_url: str) -> str:
    parts = urllib.parse.urlsplit(dagster_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidInputError(
            f"METASPEND_DAGSTER_URL / --dagster-url {db.display_url(dagster_url)!r} is not the webserver's "
            "address, e.g. http://127.0.0.1:3000"
        )
    return dagster_url.rstrip("/") + "/graphql"


def submit(dagster_url: str, request: BackfillRequest) -> str:
    """Submit an asset backfill of the spend assets over the range to the webserver at `dagster_url`;
    the daemon launches its run. Returns the backfill's id."""
    from metaspend_pipeline.defs.meta_spend.jobs import SPEND_ASSETS

    url = _graphql_url(dagster_url)
    shown = db.display_url(dagster_url)
    params: dict[str, Any] = {
        "assetSelection": [{"path": key.path} for key in SPEND_ASSETS],
        "partitionNames": request.partition_keys(),
        "title": request.title(),
        "description": f"{request.days} day(s) of {JOB_NAME}'s assets, submitted by `metaspend backfill`.",
        "tags": [{"key": "metaspend/command", "value": "backfill"}],
    }
    if request.run_config():
        params["runConfigData"] = request.run_config()
    try:
        response = requests.post(
            url, json={"query": LAUNCH_BACKFILL, "variables": {"params": params}}, timeout=SUBMIT_TIMEOUT_SECONDS
        )
    except requests.ConnectionError:
        raise InvalidInputError(
            f"no Dagster webserver answers at {shown}: start the UI (`dg dev`, or dagster-webserver in "
            "production) or point METASPEND_DAGSTER_URL / --dagster-url at it; or run the range now with --wait"
        ) from None
    except requests.RequestException as exc:
        raise MetaspendError(f"submitting the backfill to {shown} failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise MetaspendError(f"the Dagster webserver at {shown} answered HTTP {response.status_code}")
    try:
        body = response.json()
        result = body["data"]["launchPartitionBackfill"]
    except (ValueError, KeyError, TypeError):
        raise MetaspendError(f"the Dagster webserver at {shown} sent an answer that is not GraphQL's") from None
    if result.get("__typename") != "LaunchBackfillSuccess":
        errors = [e.get("message", "") for e in result.get("errors") or []]
        first = (result.get("message") or "; ".join(errors) or str(body.get("errors") or "")).strip().splitlines()
        raise MetaspendError(
            f"the Dagster webserver at {shown} refused the backfill ({result.get('__typename')}): "
            f"{redact(first[0]) if first else 'no message'}"
        )
    return str(result["backfillId"])


@dataclass
class Summary:
    """What a run wrote, read back from the warehouse and the fetch log."""

    days: int
    spend_rows: int = 0
    raw_rows: int = 0
    breakdown_rows: int = 0
    meta_requests: int = 0
    spend_by_currency: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        spend = ", ".join(f"{c} {v:,.2f}" for c, v in sorted(self.spend_by_currency.items())) or "none"
        lines = [
            f"days: {self.days}",
            f"rows: {self.spend_rows} in meta_spend_daily ({self.raw_rows} insight rows fetched)",
            f"spend (campaign level): {spend}",
            *([f"breakdowns: {self.breakdown_rows} rows fetched"] if self.breakdown_rows else []),
            f"Meta requests: {self.meta_requests}",
        ]
        lines += [f"failed: {failure}" for failure in self.failures]
        return lines


def summarize(conn: sa.Connection, run_id: str, request: BackfillRequest) -> Summary:
    summary = Summary(days=request.days)
    organizations: Sequence[str] | None = request.organizations or None
    summary.spend_rows, spend = spend_store.spend_summary(conn, request.since, request.until, organizations)
    summary.spend_by_currency.update(spend)
    for outcome in raw_store.fetches_of_run(conn, run_id, report=None):  # the spend's and the breakdowns'
        if outcome.report == "spend":
            summary.raw_rows += outcome.rows
        else:
            summary.breakdown_rows += outcome.rows
        summary.meta_requests += outcome.requests
        if outcome.status != "OK":
            where = ("" if outcome.report == "spend" else f"{outcome.report} of ") + (
                f"organization {outcome.organization_id}"
                + (f", ad account {outcome.ad_account_id}" if outcome.ad_account_id else "")
            )
            summary.failures.append(f"{where}: {outcome.error}")
    return summary


def dagster_instance() -> dg.DagsterInstance:
    """The Dagster instance of DAGSTER_HOME, where the UI and the daemon look."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        raise InvalidInputError(
            "DAGSTER_HOME is not set: a run is recorded in a Dagster instance; export DAGSTER_HOME as a "
            "directory of its own with a dagster.yaml (deploy/dagster.yaml in production)"
        )
    return dg.DagsterInstance.get()


def run_now(instance: dg.DagsterInstance, request: BackfillRequest, echo: Echo) -> tuple[bool, str]:
    """Run the spend assets over the range now, as one run recorded in `instance`; (success, run id)."""
    tags = {
        RANGE_START_TAG: request.since.isoformat(),
        RANGE_END_TAG: request.until.isoformat(),
        "metaspend/command": "backfill --wait",
    }
    success, run_id, _ = run_in_process(instance, JOB_NAME, tags, request.run_config(), echo)
    return success, run_id


def run_in_process(
    instance: dg.DagsterInstance, job_name: str, tags: dict[str, str], config: dict[str, Any], echo: Echo
) -> tuple[bool, str, list[CheckVerdict]]:
    """One run of `job_name` in this process (`execute_in_process`), recorded in `instance`, with the
    `metaspend_progress` logger's lines echoed as it goes; (success, run id, the checks' verdicts)."""
    from metaspend_pipeline.definitions import load
    from metaspend_pipeline.defs.common.progress import run_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dagster's notices about beta APIs are for developers
        job = load().resolve_job_def(job_name)
    run_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="metaspend-progress-") as directory:
        progress_file = Path(directory) / "progress.jsonl"
        follower = RunProgress(progress_file, echo, started=time.time())
        done = threading.Event()
        thread = threading.Thread(target=follower.follow, args=(done.is_set,), daemon=True)
        thread.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = job.execute_in_process(
                    run_config={**config, **run_config(progress_file)},
                    instance=instance,
                    run_id=run_id,
                    raise_on_error=False,
                    tags=tags,
                )
        finally:
            done.set()
            thread.join()
    return result.success, run_id, follower.checks


@cli.command("backfill")
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (a partition: a UTC day).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive; at the latest yesterday.")
@click.option("--org", "organizations", multiple=True, help="Only this organization; repeat for several.")
@click.option("--wait", is_flag=True, help="Run it now in this process and wait, instead of submitting it.")
@click.option(
    "--dagster-url",
    default=None,
    help="The Dagster webserver a backfill is submitted to; default METASPEND_DAGSTER_URL, else "
    "http://127.0.0.1:3000 (`dg dev`).",
)
def backfill_command(
    since: str, until: str, organizations: tuple[str, ...], wait: bool, dagster_url: str | None
) -> None:
    """Load a date range of spend and ROAS: a Dagster backfill the daemon runs, or with --wait, now.

    Either way it is one run of meta_spend_job's assets, recorded in the Dagster instance (the UI
    shows it): submitted to the webserver's GraphQL API, or with --wait run in this process against
    the instance of DAGSTER_HOME.
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
    if not wait:
        url = dagster_url or settings.dagster_url
        backfill_id = submit(url, request)
        click.echo(
            f"submitted backfill {backfill_id}: {request.title()} ({request.days} day(s), one run) to "
            f"{db.display_url(url)}; the Dagster daemon runs it, the UI shows it under Backfills"
        )
        return
    with dagster_instance() as instance:
        click.echo(f"{request.title()}: {request.days} day(s) in one run", err=True)
        ok, run_id = run_now(instance, request, lambda line: click.echo(line, err=True))
    with engine.connect() as conn:
        summary = summarize(conn, run_id, request)
    click.echo(f"run {run_id}: {'succeeded' if ok else 'FAILED'}")
    for line in summary.lines():
        click.echo(safe_text(redact(line)))
    if not ok:
        click.get_current_context().exit(1)
