"""The Typer app and its shared options.

Commands live in sibling modules, one per group; heavy modules are imported
inside the commands that need them, so that quick commands start quickly.
Errors leave as ProcctlError; `procctl.entry.main` turns them into one line
and an exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from procctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from procctl.config.manifest import Manifest

app = typer.Typer(
    name="procctl",
    help="Run a manifest of processes under a bounded pool; watch and control them.",
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def process_names(ctx: typer.Context) -> list[str]:
    """The manifest's process names, for shell completion: the manifest of
    the -f given so far, else the default one; none when it cannot be read
    (a completion never prints an error)."""
    from procctl.errors import ProcctlError

    try:
        return list(load_manifest_option(ctx.params.get("file")).processes)
    except (ProcctlError, OSError, ValueError):
        return []


def complete_name(ctx: typer.Context, incomplete: str) -> list[str]:
    return [name for name in process_names(ctx) if name.startswith(incomplete)]


def complete_name_list(ctx: typer.Context, incomplete: str) -> list[str]:
    """The last name of a comma-separated list (`--only web,wo<TAB>`)."""
    done, comma, last = incomplete.rpartition(",")
    return [f"{done}{comma}{name}" for name in process_names(ctx) if name.startswith(last)]


def complete_assignment(ctx: typer.Context, incomplete: str) -> list[str]:
    """`scale web<TAB>` → `web=`."""
    return [f"{name}=" for name in process_names(ctx) if name.startswith(incomplete)]


FileOption = Annotated[
    Optional[Path],
    typer.Option(
        "--file",
        "-f",
        metavar="FILE",
        help="The manifest (procfile.toml or Procfile). Default: $PROCCTL_FILE, else ./procfile.toml, else ./Procfile.",
        show_default=False,
    ),
]
"""-f is the manifest in every command, as in foreman, honcho, overmind and
docker compose (`init` and `import` write it, the others read it)."""


def _version(value: bool) -> None:
    if value:
        from procctl import __version__

        typer.echo(f"procctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Run a manifest of processes under a bounded pool; watch and control them."""


def load_manifest_option(file: Path | None) -> Manifest:
    from procctl.config.locate import find_manifest
    from procctl.config.loader import load_manifest

    manifest = load_manifest(find_manifest(file))
    for warning in manifest.warnings:
        typer.echo(f"procctl: warning: {warning}", err=True)
    return manifest


def parse_duration_option(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    from procctl.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option}: must be more than zero")
    return seconds


def make_console(file: TextIO | None = None) -> Console:
    """A rich console for tables (on stdout, or `file`). Off a terminal (a
    pipe, a CI log) rich assumes 80 columns and folds tables into unreadable
    strips; use a wide page there unless COLUMNS says otherwise."""
    from rich.console import Console

    console = Console(file=file)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=file, width=160)
    return console


def color_wanted(stream: object = None) -> bool:
    """Colors for our own escape codes: NO_COLOR (non-empty) turns them off,
    FORCE_COLOR on, else a terminal that is not 'dumb' gets them. The same
    rules rich follows for its tables, without importing rich on this path."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    out = stream if stream is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") != "dumb"
