"""`metaspend demo`: the README's quick start."""

from __future__ import annotations

import click

from metaspend_pipeline.cli.app import cli


@cli.command("demo")
def demo_command() -> None:
    """Set up the embedded default and run the demo (the README's quick start)."""
    from metaspend_pipeline import demo

    demo.run(echo=click.echo)
