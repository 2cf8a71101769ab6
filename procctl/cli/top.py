"""`procctl top`: the interactive view of `procctl run`, attached to a
supervisor already running (`procctl up -d`, or a `run` in another terminal).
Leaving it leaves the supervisor running."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, make_console


@app.command()
def top(
    file: FileOption = None,
    tail: Annotated[
        Optional[int], typer.Option("--tail", help="Lines of merged output under the table (default: what fits).", min=0, show_default=False)
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print the status table once and exit (also what happens off a terminal).")] = False,
) -> None:
    """The interactive live view of a running supervisor: select, read a log, restart, stop, pause, scale; q leaves it running."""
    from procctl.cli.control import call
    from procctl.control.address import supervisor_of

    streams = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
    if once or os.environ.get("TERM", "") == "dumb" or not all(stream is not None and stream.isatty() for stream in streams):
        from procctl.ui.tables import status_table

        make_console().print(status_table(call(file, "status")))
        return
    import asyncio

    path, manifest = supervisor_of(file)
    message = asyncio.run(_attached(path, manifest, tail))
    if message:
        typer.echo(f"procctl: {message}", err=True)


async def _attached(path: Path, manifest: Path, tail: int | None) -> str:
    from procctl.cli.faces import Attached
    from procctl.ui.tui.app import LiveApp

    face = await Attached.connect(path, manifest)
    try:
        view = LiveApp(face, tail=tail)
        await view.run_async()
    finally:
        await face.close()
    return view.exit_message
