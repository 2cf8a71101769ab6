"""`procctl logs`: the log files under .procctl/logs, tailed and followed.

Works with or without a running supervisor: the logs are plain files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import app, load_manifest_option
from procctl.engine.store import tail_of
from procctl.errors import UsageError


def log_files(file: Path | None, names: list[str]) -> list[tuple[str, Path]]:
    """(instance name, log path) for the named processes/instances, or all."""
    from procctl.config.plan import build_plan
    from procctl.engine.store import StateDir

    manifest = load_manifest_option(file)
    plan = build_plan(manifest)
    state = StateDir.beside(manifest.path)
    chosen: list[tuple[str, Path]] = []
    for name in names or list(plan.order):
        jobs = plan.jobs_of(name) if name in manifest.processes else tuple(j for j in plan.jobs if j.name == name)
        if jobs:
            chosen.extend((job.name, state.log_path(job.log_name)) for job in jobs)
        elif name in manifest.processes:
            continue
        else:
            # Instances added at run time (scale) are not in the plan.
            extra = state.logs / f"{name}.log"
            if not extra.exists():
                known = ", ".join(manifest.processes)
                raise UsageError(f"unknown process or instance {name!r}; known processes: {known}")
            chosen.append((name, extra))
        if name in manifest.processes:
            planned = {path for _, path in chosen}
            for path in sorted(state.logs.glob(f"{name}.*.log")):
                if path not in planned:
                    chosen.append((path.name[: -len(".log")], path))
    return [(n, p) for n, p in chosen if p.exists()]


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
    files = log_files(file, names or [])
    if not files:
        raise UsageError("no log files yet: run the manifest first")
    many = len(files) > 1
    width = max(len(name) for name, _ in files)
    out = sys.stdout.buffer
    offsets: dict[Path, int] = {}
    pending: dict[Path, bytes] = {}
    for name, path in files:
        data, offsets[path] = tail_of(path, lines)
        out.write(_prefixed(name, width, data if data.endswith(b"\n") or not data else data + b"\n", many))
    out.flush()
    if not follow:
        return
    try:
        while True:
            wrote = False
            for name, path in files:
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if size < offsets[path]:
                    offsets[path] = 0  # truncated: a new run started
                if size == offsets[path]:
                    continue
                with open(path, "rb") as f:
                    f.seek(offsets[path])
                    data = f.read(size - offsets[path])
                offsets[path] += len(data)
                data = pending.pop(path, b"") + data
                cut = data.rfind(b"\n") + 1
                if cut < len(data):
                    pending[path] = data[cut:]
                if cut:
                    out.write(_prefixed(name, width, data[:cut], many))
                    wrote = True
            if wrote:
                out.flush()
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
