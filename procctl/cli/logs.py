"""`procctl logs`: the log files under .procctl/logs, tailed and followed.

Works with or without a running supervisor: the logs are plain files.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import app, load_manifest_option
from procctl.engine.store import StateDir, tail_of
from procctl.errors import UsageError


def log_files(file: Path | None, names: list[str]) -> tuple[StateDir, list[tuple[str, str]]]:
    """The state directory, and (instance name, log file name) for the named
    processes/instances, or all, that have a log."""
    from procctl.config.plan import build_plan
    from procctl.config.select import resolve

    manifest = load_manifest_option(file)
    plan = build_plan(manifest)
    state = StateDir.beside(manifest.path)
    present = set(state.log_names())
    by_process: dict[str, list[tuple[str, str]]] = {}
    for job in plan.jobs:
        by_process.setdefault(job.process, []).append((job.name, job.log_name))
    planned = {log for logs in by_process.values() for _, log in logs}
    for process in plan.order:
        logs = by_process.setdefault(process, [])
        # Instances added at run time (scale) are not in the plan.
        logs.extend((log.removesuffix(".log"), log) for log in sorted(present - planned) if log.startswith(f"{process}."))
    by_instance = {instance: (instance, log) for logs in by_process.values() for instance, log in logs}
    chosen = resolve(names or plan.order, by_process, by_instance)
    return state, [(name, log) for name, log in chosen if log in present]


def _open_log(state: StateDir, log_name: str) -> int | None:
    """The log opened without following a link (a link is refused); None if gone."""
    try:
        return state.open(f"logs/{log_name}", os.O_RDONLY)
    except FileNotFoundError:
        return None


def _prefixed(name: str, width: int, data: bytes, many: bool) -> bytes:
    if not many or not data:
        return data
    prefix = f"{name.ljust(width)} | ".encode()
    body = data[:-1] if data.endswith(b"\n") else data
    return prefix + body.replace(b"\n", b"\n" + prefix) + b"\n"


@app.command()
def logs(
    names: Annotated[Optional[list[str]], typer.Argument(help="Processes or instances (default: all).", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what is appended.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many of the last lines to print first.")] = 100,
    file: Annotated[Optional[Path], typer.Option("--file", help="The manifest (default: $PROCCTL_FILE, ./procfile.toml, ./Procfile).", show_default=False)] = None,
) -> None:
    """Print the log files of processes; -f follows them live."""
    state, files = log_files(file, names or [])
    if not files:
        raise UsageError("no log files yet: run the manifest first")
    many = len(files) > 1
    width = max(len(name) for name, _ in files)
    out = sys.stdout.buffer
    offsets: dict[str, int] = {}
    pending: dict[str, bytes] = {}
    for name, log in files:
        fd = _open_log(state, log)
        data, offsets[log] = b"", 0
        if fd is not None:
            try:
                data, offsets[log] = tail_of(fd, lines)
            finally:
                os.close(fd)
        out.write(_prefixed(name, width, data if data.endswith(b"\n") or not data else data + b"\n", many))
    out.flush()
    if not follow:
        return
    try:
        while True:
            wrote = False
            for name, log in files:
                fd = _open_log(state, log)
                if fd is None:
                    continue
                try:
                    size = os.fstat(fd).st_size
                    if size < offsets[log]:
                        offsets[log] = 0  # truncated: a new run started
                    data = os.pread(fd, size - offsets[log], offsets[log]) if size > offsets[log] else b""
                finally:
                    os.close(fd)
                if not data:
                    continue
                offsets[log] += len(data)
                data = pending.pop(log, b"") + data
                cut = data.rfind(b"\n") + 1
                if cut < len(data):
                    pending[log] = data[cut:]
                if cut:
                    out.write(_prefixed(name, width, data[:cut], many))
                    wrote = True
            if wrote:
                out.flush()
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
