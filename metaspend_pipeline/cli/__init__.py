"""The `metaspend` command, one module per command group; `main` is the console script.

Bad input ends with a one-line `metaspend: error: ...` on standard error and exit code 2, and
nothing half-written.
"""

from metaspend_pipeline.cli import (  # noqa: F401 - registers the commands
    accounts,
    audience,
    backfill,
    db,
    demo,
    keys,
    roas,
    sandbox,
)
from metaspend_pipeline.cli.app import cli, main

__all__ = ["cli", "main"]
