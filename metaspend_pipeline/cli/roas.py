"""`metaspend roas`: ROAS of an organization over a date range, in the product dashboard's shape."""

from __future__ import annotations

import datetime as dt

import click

from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine, parse_day, print_table
from metaspend_pipeline.errors import InvalidInputError, MetaspendError, UnknownOrganizationError
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db


@cli.command("roas")
@click.option("--org", "organization_id", required=True)
@click.option(
    "--group-by", "group", type=click.Choice(["campaign", "adset", "ad"]), default="campaign", show_default=True
)
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (the ad account's dates).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="json", show_default=True)
@click.option(
    "--currency",
    type=click.Choice(["account", "reporting"]),
    default="account",
    show_default=True,
    help="account: each ad account's own currency (mixed currencies give no ROAS); reporting: the "
    "organization's reporting currency, converted per day at the ECB's rates.",
)
def roas_command(organization_id: str, group: str, since: str, until: str, fmt: str, currency: str) -> None:
    """ROAS of an organization over a date range, summed from the daily ROAS tables."""
    from metaspend_pipeline import report

    organization_id = store.validate_organization_id(organization_id)
    first, last = parse_day(since, "--from"), parse_day(until, "--to")
    if first > last:
        raise InvalidInputError(f"--from {first} is after --to {last}")
    engine = migrated_engine(load_settings())
    with engine.connect() as conn:
        if not report.organization_known(conn, organization_id, group):
            raise UnknownOrganizationError(
                f"organization {organization_id} has no connected account and no ROAS rows; see `metaspend accounts list`"
            )
        missing = report.unloaded_days(conn, organization_id, first, last)
        total = (last - first).days + 1
        yesterday = db.utcnow().date() - dt.timedelta(days=1)  # the last day a backfill can load
        loadable = [d for d in missing if d <= yesterday]
        load = (
            f"load them with `metaspend backfill --from {loadable[0]} --to {loadable[-1]} --org {organization_id}`"
            if loadable
            else "they are not over yet"
        )
        if len(missing) == total:
            raise MetaspendError(
                f"nothing was loaded for organization {organization_id} from {first} to {last} (no fetch and no "
                f"spend on any day), so there is no ROAS to report; {load}"
            )
        if missing:
            click.echo(
                f"metaspend: warning: {len(missing)} of {total} day(s) were never loaded for organization "
                f"{organization_id}: {report.day_ranges(missing)}; their ROAS is missing, not 0; {load}",
                err=True,
            )
        items = report.roas_report(conn, organization_id, group, first, last, currency=currency)
    if fmt == "json":
        click.echo(report.to_json(items))
    elif fmt == "csv":
        click.echo(report.to_csv(items, group))
    else:
        headers, rows = report.to_rows(items, group)
        print_table(headers, rows)
