"""`procctl cluster up`: a Dask cluster on this machine, in the foreground."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app
from procctl.errors import UsageError


DEFAULT_PORT = 8786


class ClusterAction(str, enum.Enum):
    up = "up"


@app.command()
def cluster(
    action: Annotated[ClusterAction, typer.Argument(metavar="ACTION", help="up: start a scheduler and workers here, until Ctrl-C.")],
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes.", min=1, max=256)] = 2,
    threads: Annotated[int, typer.Option("--threads", help="Threads (jobs at once) per worker.", min=1, max=256)] = 1,
    port: Annotated[
        Optional[int],
        typer.Option(
            "--port",
            help="The scheduler's port on 127.0.0.1 (0: any free one); default: the port of the manifest's [settings] dask scheduler on 127.0.0.1, else 8786.",
            min=0, max=65535, show_default=False,
        ),
    ] = None,
    memory: Annotated[
        Optional[str], typer.Option("--memory", help="Memory per worker (its limit and its `memory` resource); default: RAM / workers.", show_default=False)
    ] = None,
    dashboard: Annotated[
        Optional[int], typer.Option("--dashboard", help="Serve the scheduler's dashboard on 127.0.0.1:PORT (needs bokeh).", min=0, max=65535, show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cluster's address, processes and logs as one JSON line.")] = False,
    file: FileOption = None,
) -> None:
    """A Dask scheduler and workers on this machine, bound to 127.0.0.1, until Ctrl-C."""
    from procctl.cluster import local
    from procctl.jsonout import versioned
    from procctl.units import format_size, parse_size

    try:
        memory_bytes = parse_size(memory) if memory is not None else None
    except ValueError as exc:
        raise UsageError(f"--memory: {exc}") from None
    if port is None:
        port = _manifest_port(file)
    started = local.start(workers=workers, threads=threads, port=port, memory_bytes=memory_bytes, dashboard=dashboard)
    try:
        scheme_less = started.address.split("://", 1)[-1]
        if as_json:
            info = {"address": started.address, "workers": workers, "threads": threads, "memory_bytes": started.memory_bytes,
                    "pids": started.pids, "logs": str(started.directory)}  # fmt: skip
            sys.stdout.write(json.dumps(versioned(info)) + "\n")  # one line: read as soon as it comes
        else:
            typer.echo(
                f"procctl cluster: scheduler {started.address}, {workers} worker{'s' if workers != 1 else ''} × {threads} "
                f"thread{'s' if threads != 1 else ''}, {format_size(started.memory_bytes)} each, on 127.0.0.1 only (logs: {started.directory})"
            )
            typer.echo(f"run jobs there: procctl run --executor dask://{scheme_less}   (Ctrl-C stops the cluster)")
        sys.stdout.flush()
        why = local.wait(started)
    finally:
        local.stop(started)
    if why.startswith("a process"):
        typer.echo(f"procctl cluster: {why}; stopped", err=True)
        raise typer.Exit(1)
    local.remove(started)
    typer.echo(f"procctl cluster: {why}; stopped", err=True)


def _manifest_port(file: Path | None) -> int:
    """The port of the manifest's `[settings] dask` scheduler when it is on
    this machine's loopback (so `cluster up` then `run` need no address),
    else Dask's 8786. Without a manifest (none given, none here): 8786."""
    from procctl.config.locate import find_manifest
    from procctl.errors import ProcctlError

    try:
        path = find_manifest(file)
    except ProcctlError:
        if file is not None:
            raise
        return DEFAULT_PORT
    from procctl.config.loader import load_manifest

    dask = load_manifest(path).settings.dask
    if dask is not None:
        host, _, port = dask.scheduler.split("://", 1)[-1].rpartition(":")
        if host in ("127.0.0.1", "localhost"):
            return int(port)
    return DEFAULT_PORT
