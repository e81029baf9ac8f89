"""`metaspend db`: the warehouse schema and the read-only role for BI tools."""

from __future__ import annotations

import os

import click
import sqlalchemy as sa

from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine
from metaspend_pipeline.errors import InvalidInputError
from metaspend_pipeline.redaction import redact
from metaspend_pipeline.storage import db


@cli.group("db")
def db_group() -> None:
    """The warehouse schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (idempotent)."""
    settings = load_settings()
    db.upgrade(settings.database_url)
    revision = db.current_revision(settings.database_url)
    click.echo(f"warehouse {db.display_url(settings.database_url)} is at revision {revision}")


@db_group.command("grant-bi")
@click.option("--role", required=True, help="The PostgreSQL role to create or update, e.g. metaspend_bi.")
@click.option(
    "--password-env",
    default=None,
    help="The environment variable holding the role's password. Without it the password is left as it is.",
)
def db_grant_bi(role: str, password_env: str | None) -> None:
    """Create or update a read-only role for BI tools: SELECT on the reporting tables, nothing else.

    Every other privilege the role holds in the database is revoked, default privileges included,
    and TEMPORARY is revoked from PUBLIC (said in a notice). PostgreSQL only. Run it again after
    `db upgrade` adds reporting tables.
    """
    from metaspend_pipeline.redaction import register_secret
    from metaspend_pipeline.storage import bi

    settings = load_settings()
    role = bi.validate_role_name(role)
    if not db.is_postgres(db.engine_for(settings.database_url)):
        raise InvalidInputError(
            f"grant-bi needs PostgreSQL; the warehouse {db.display_url(settings.database_url)} is SQLite, "
            "which has no roles (give a BI tool a copy of the file instead)"
        )
    password = None
    if password_env is not None:
        password = os.environ.get(password_env) or None
        if password is None:
            raise InvalidInputError(f"--password-env {password_env}: the environment variable is not set or empty")
        register_secret(password)
    engine = migrated_engine(settings)
    try:
        with engine.begin() as conn:
            report = bi.grant_bi(conn, role, password)
    except sa.exc.ProgrammingError as exc:
        if getattr(exc.orig, "sqlstate", None) != bi.INSUFFICIENT_PRIVILEGE:
            raise
        raise InvalidInputError(
            f"grant-bi as {sa.make_url(settings.database_url).username or 'this user'} failed: "
            f"{redact(str(exc.orig).splitlines()[0])}; run it as the tables' owner with CREATEROLE, or as a "
            "superuser (METASPEND_DATABASE_URL of that user); nothing was changed"
        ) from None
    click.echo(
        f"{'created' if report.created else 'updated'} role {role}"
        f"{' with the password from ' + password_env if password_env else ' (password unchanged)'}: "
        f"SELECT on {', '.join(report.granted)}; {'see the warning below' if report.still_held else 'nothing else'}"
    )
    if report.revoked:
        click.echo(f"revoked every privilege it held beyond that: {'; '.join(report.revoked)}")
    if report.temp_revoked_from_public:
        click.echo(
            "notice: revoked TEMPORARY on this database from PUBLIC: every role could create temporary tables "
            "in it, this one too. The database's owner keeps it (the pipeline creates none); GRANT TEMPORARY ON "
            "DATABASE to a role of your own that needs it",
            err=True,
        )
    if report.still_held:
        click.echo(
            f"warning: role {role} can still use {'; '.join(report.still_held)}, through privileges of PUBLIC "
            "that only their owner can revoke (REVOKE ... FROM PUBLIC as the owner)",
            err=True,
        )
    if report.public_can_create:
        click.echo(
            "warning: every role (PUBLIC) may CREATE tables in this schema (PostgreSQL before 15); "
            "as the schema's owner run REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            err=True,
        )
