"""`metaspend keys`: the token encryption keys."""

from __future__ import annotations

import click

from metaspend_pipeline import credentials
from metaspend_pipeline.cli.app import cli, load_settings, migrated_engine
from metaspend_pipeline.tokens import KeyRing, generate_key


@cli.group("keys")
def keys_group() -> None:
    """Token encryption keys."""


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a new random key for META_TOKEN_ENCRYPTION_KEY."""
    click.echo(generate_key())


@keys_group.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored token with META_TOKEN_ENCRYPTION_KEY, in one transaction.

    Put the previous key in META_TOKEN_ENCRYPTION_OLD_KEYS first, so old tokens still decrypt.
    """
    settings = load_settings()
    keyring = KeyRing.from_settings(settings)
    engine = migrated_engine(settings)
    with engine.begin() as conn:
        report = credentials.rotate_keys(conn, keyring)
    click.echo(
        f"re-encrypted {report.reencrypted} token(s) with key {keyring.current_key_id}; "
        f"{report.already_current} already used it"
    )
