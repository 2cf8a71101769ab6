"""The Typer app and its shared options.

Commands live in sibling modules, one per group; heavy modules are imported
inside the commands that need them, so that quick commands start quickly.
Errors leave as ProcctlError; `procctl.entry.main` turns them into one line
and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# Shared with the commands, which import them from here.
from procctl.cli.common import color_wanted, load_manifest_option, make_console, parse_duration_option  # noqa: F401
from procctl.cli.quick import FILE

app = typer.Typer(
    name="procctl",
    help="Run a manifest of processes under a bounded pool; watch and control them.",
    # Its --show-completion and --install-completion are listed in the help,
    # but reach `completion` (procctl.cli.legacy, procctl.cli.completion): Typer's own ignore a shell
    # named after them and print or install the one they detect.
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
        *FILE,
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
