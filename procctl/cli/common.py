"""What the commands share that needs no Typer: reading the manifest that
-f names, option values, warnings, the console. The quick forms of
`procctl.cli.quick` use it without loading the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from procctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from procctl.config.manifest import Manifest
    from procctl.ui.page import TableData


def warn(message: str) -> None:
    """One `procctl: warning: …` line on stderr."""
    sys.stderr.write(f"procctl: warning: {message}\n")
    sys.stderr.flush()


def load_manifest_option(file: Path | None) -> Manifest:
    from procctl.config.locate import find_manifest
    from procctl.config.loader import load_manifest

    manifest = load_manifest(find_manifest(file))
    for warning in manifest.warnings:
        warn(warning)
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
    strips; use a wide page there unless COLUMNS says otherwise. What it
    prints is text, never rich markup or emoji codes: a command, a path or a
    name shown in a cell (`echo [a; rm x ]`) is shown whole, and `[/x]`
    in one is not an error."""
    from rich.console import Console

    console = Console(file=file, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=file, width=PAGE_WIDTH, markup=False, emoji=False)
    return console


PAGE_WIDTH = 160
"""The width of tables printed off a terminal (unless COLUMNS says otherwise)."""


def print_page(tables: list[TableData], lines: list[str], out: TextIO | None = None) -> None:
    """Tables, then lines of text, on stdout (or `out`) as rich prints them
    through `make_console`. Off a terminal without colours, the same text
    is written without loading rich when every cell fits as it is."""
    from procctl.ui.page import plain_page

    out = out if out is not None else sys.stdout
    text = plain_page(tables, lines, PAGE_WIDTH) if _uncoloured_page(out) else None
    if text is not None:
        out.write(text)
        out.flush()
        return
    console = make_console(out)
    for table in tables:
        console.print(table.to_rich())
    for line in lines:
        console.print(line, highlight=False, markup=False)


def _uncoloured_page(out: TextIO) -> bool:
    """Whether rich, through `make_console`, writes to `out` as to a file
    PAGE_WIDTH columns wide: no terminal, nothing forcing one or setting the
    width, and an encoding that keeps its box characters."""
    if any(name in os.environ for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")):
        return False
    isatty = getattr(out, "isatty", None)
    if isatty is None or isatty():
        return False
    return (getattr(out, "encoding", None) or "").lower().startswith("utf")


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
