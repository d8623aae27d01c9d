"""What every command shares: the Typer apps, option types, choices as Enums (Typer validates
them and ``--help`` lists them) and the one place a ``UserError`` becomes a one-line message
with exit code 2."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ..errors import UserError


class _Commands(TyperGroup):
    """Every command's ``UserError`` (bad input, missing files, ...) as ``error: <one line>``, exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as error:
            fail(str(error))


class Backend(str, Enum):
    """The inference runtime (see ``jaguar_reid.config.Backend``)."""

    torch = "torch"
    onnx = "onnx"
    auto = "auto"


class ExportLayout(str, Enum):
    """How ``catalog export`` lays the photos out."""

    kaggle = "kaggle"
    folders = "folders"


class ExportFormat(str, Enum):
    """Model export formats."""
    onnx = "onnx"


_SETTINGS = {"max_content_width": 100, "help_option_names": ["-h", "--help"]}
app = typer.Typer(
    cls=_Commands,
    help="Re-identify individual animals from photos (Kaggle Jaguar Re-ID format).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=_SETTINGS,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"jaguar-reid {version('jaguar-reid')}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Re-identify individual animals from photos (Kaggle Jaguar Re-ID format)."""


config_app = typer.Typer(cls=_Commands, help="Show presets and every config key with its default.", no_args_is_help=True)
app.add_typer(config_app, name="config")
catalog_app = typer.Typer(cls=_Commands, help="A catalogue of known individuals: create, add photos, decide, rename, merge, undo, export, stats.",
                          no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

DataRoot = Annotated[Path, typer.Option("--data-root", help="Folder with train.csv (and test.csv) and the image folders.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE",
                                                       help="Override a config value, e.g. --set train.epochs=3 (repeatable).")]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (default: the config's).")]
CatalogLocation = Annotated[str, typer.Argument(metavar="CATALOG", help="Catalogue: a SQLite file (catalog.db) or a database URL.")]
Who = Annotated[Optional[str], typer.Option("--who", help="Who made the change (default: your user name).")]
Strict = Annotated[bool, typer.Option("--strict", help="Refuse everything at the first file that is not a readable photo (default: skip and list it).")]
BackendOption = Annotated[Backend, typer.Option("--backend", "--engine", help="Inference runtime: torch, onnx (onnxruntime, CPU) or auto (onnx on the CPU); --engine is its old name.")]


def fail(message: str) -> None:
    """Print ``error: <message>`` to stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def seed_list(seed: Optional[int], seeds: Optional[str]) -> Optional[list[int]]:
    """Training seeds from ``--seeds`` (or env SEEDS), else ``--seed``, else None (the config's)."""
    text = seeds or os.environ.get("SEEDS")
    if text:
        try:
            return [int(s) for s in text.replace(",", " ").split()]
        except ValueError:
            fail(f"--seeds/SEEDS must be integers separated by commas or spaces, got {text!r}")
    return [seed] if seed is not None else None


def typed(**values) -> dict:
    """Typed CLI flags as config overrides (``section.key`` -> value), leaving out flags not given."""
    return {key.replace("__", "."): value for key, value in values.items() if value is not None}
