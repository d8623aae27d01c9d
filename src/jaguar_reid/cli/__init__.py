"""The ``jaguar-reid`` command: thin wrappers around library calls, one module per command group.

Heavy libraries (torch, timm, pandas) are imported inside the commands that need them, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import sys

import typer

# Each module registers its commands on ``app``; --help lists them in this order.
from . import (  # noqa: F401, E402
    catalog,
    review,
    runs,  # noqa: F401, I001
)
from .common import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``jaguar-reid`` entry point (Ctrl-C ends with a hint to resume and exit code 130)."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
