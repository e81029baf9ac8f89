"""`metaspend breakdown` and `metaspend reach`: who saw the ads, in the style of `metaspend roas`."""

from __future__ import annotations

import datetime as dt

import click

from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine, parse_day, print_table
from metaspend_pipeline.errors import InvalidInputError, UnknownOrganizationError
from metaspend_pipeline.meta.models import BREAKDOWN_SETS
from metaspend_pipeline.settings import BREAKDOWN_LEVELS, REACH_LEVELS
from metaspend_pipeline.storage import accounts as store
from metaspend_pipeline.storage import db

_FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="table", show_default=True
)


def _print(items: list, headers: list[str], fmt: str) -> None:
    from metaspend_pipeline import report

    if fmt == "json":
        click.echo(report.to_json(items))
    elif fmt == "csv":
        click.echo(report.items_to_csv(items, headers))
    else:
        print_table(*report.items_to_rows(items, headers))


def _known(conn, organization_id: str) -> None:  # type: ignore[no-untyped-def]
    if not store.list_accounts(conn, organization_id):
        raise UnknownOrganizationError(
            f"organization {organization_id} has no connected account; see `metaspend accounts list`"
        )


def _warn_unloaded(conn, organization_id: str, report: str, first: dt.date, last: dt.date) -> None:  # type: ignore[no-untyped-def]
    from metaspend_pipeline import audience
    from metaspend_pipeline.report import day_ranges

    missing = audience.unloaded_days(conn, organization_id, report, first, last)
    if missing:
        click.echo(
            f"metaspend: warning: {len(missing)} of {(last - first).days + 1} day(s) have no {report} loaded for "
            f"organization {organization_id}: {day_ranges(missing)}; they are missing from the figures, not 0",
            err=True,
        )


@cli.command("breakdown")
@click.option("--org", "organization_id", required=True)
@click.option("--by", "by", type=click.Choice(list(BREAKDOWN_SETS)), required=True, help="The breakdown.")
@click.option("--from", "since", required=True, help="First day, YYYY-MM-DD (the ad account's dates).")
@click.option("--to", "until", required=True, help="Last day, YYYY-MM-DD, inclusive.")
@click.option("--level", type=click.Choice(list(BREAKDOWN_LEVELS)), default="campaign", show_default=True)
@_FORMAT
def breakdown_command(organization_id: str, by: str, since: str, until: str, level: str, fmt: str) -> None:
    """Spend, impressions and clicks per object and age and gender, country or placement, summed over a range."""
    from metaspend_pipeline import audience

    organization_id = store.validate_organization_id(organization_id)
    first, last = parse_day(since, "--from"), parse_day(until, "--to")
    if first > last:
        raise InvalidInputError(f"--from {first} is after --to {last}")
    engine = migrated_engine(load_settings())
    with engine.connect() as conn:
        _known(conn, organization_id)
        _warn_unloaded(conn, organization_id, "breakdowns", first, last)
        items = audience.breakdown_report(conn, organization_id, by, level, first, last)
    _print(items, audience.breakdown_headers(by, level), fmt)


@cli.command("reach")
@click.option("--org", "organization_id", required=True)
@click.option("--period", type=click.Choice(["week", "month"]), required=True)
@click.option(
    "--from", "since", default=None, help="First period start to list, YYYY-MM-DD; default: 4 weeks or 3 months ago."
)
@click.option("--to", "until", default=None, help="Last period start to list, YYYY-MM-DD; default yesterday.")
@click.option("--level", type=click.Choice(list(REACH_LEVELS)), default="campaign", show_default=True)
@_FORMAT
def reach_command(
    organization_id: str, period: str, since: str | None, until: str | None, level: str, fmt: str
) -> None:
    """Unique reach and frequency per object and week or month, as Meta counted them: never summed."""
    from metaspend_pipeline import audience

    organization_id = store.validate_organization_id(organization_id)
    default_first, default_last = audience.default_reach_range(period, db.utcnow().date())
    first = parse_day(since, "--from") if since else default_first
    last = parse_day(until, "--to") if until else default_last
    if first > last:
        raise InvalidInputError(f"--from {first} is after --to {last}")
    engine = migrated_engine(load_settings())
    with engine.connect() as conn:
        _known(conn, organization_id)
        items = audience.reach_report(conn, organization_id, period, level, first, last)
    if not items:
        click.echo(
            f"metaspend: warning: no {period}ly reach of organization {organization_id} at level {level} starts in "
            f"{first}..{last}; load it with `dg launch --assets meta_reach_{period}ly --partition ...`",
            err=True,
        )
    _print(items, audience.reach_headers(period, level), fmt)
