"""The `metaspend` command: the warehouse, the token vault and connected accounts.

Bad input ends with a one-line `metaspend: error: ...` on standard error and exit code 2, and
nothing half-written. Tokens are read from standard input, never from arguments, and never
printed.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click
import sqlalchemy as sa

from metaspend_pipeline.errors import InvalidInputError, MetaspendError
from metaspend_pipeline.redaction import RedactingFilter, redact
from metaspend_pipeline.safe_text import safe_text
from metaspend_pipeline.settings import Settings
from metaspend_pipeline.storage import db

EXIT_BAD_INPUT = 2


class _Group(click.Group):
    """Turns the package's errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MetaspendError as exc:
            click.echo(f"metaspend: error: {safe_text(redact(exc))}", err=True)
            ctx.exit(EXIT_BAD_INPUT)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("metaspend_pipeline").setLevel(logging.INFO)


def load_settings() -> Settings:
    return Settings.from_env()


def migrated_engine(settings: Settings) -> sa.Engine:
    return db.migrated_engine(settings.database_url)


def parse_day(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{option} {value!r} is not a date as YYYY-MM-DD") from None


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from metaspend_pipeline.report import format_table

    click.echo(format_table(headers, rows))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Meta ad spend into a warehouse, and ROAS from it."""
    _configure_logging()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: any bad input, the parser's included, is one line and exit code 2."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        code = cli.main(args=args, prog_name="metaspend", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"metaspend: error: {safe_text(exc.format_message())}{hint}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as exc:
        click.echo(f"metaspend: error: {safe_text(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("metaspend: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
