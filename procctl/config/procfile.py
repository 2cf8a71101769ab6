"""A Procfile (`name: command` lines) and the PORT its processes get: read
once, for `procctl run` on a Procfile and for `procctl import` alike."""

from __future__ import annotations

from collections.abc import Mapping

from procctl.bounds import MAX_PORT
from procctl.config.manifest import MAX_NAME_LENGTH, PROCESS_NAME
from procctl.errors import ManifestError

DEFAULT_PORT = 5000
PORT_STEP = 100
"""foreman gives process i (from 0) PORT = base + 100 × i."""


def parse_procfile(text: str, file: str) -> dict[str, tuple[str, int]]:
    """Each process's command and the line it is on, in the file's order.
    Raises ManifestError naming the file and the line."""
    processes: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, command = stripped.partition(":")
        name, command = name.strip(), command.strip()
        if not sep or not command:
            raise ManifestError("expected 'name: command'", path=file, line=number)
        if not PROCESS_NAME.match(name):
            raise ManifestError(f"expected 'name: command', and {name!r} is no process name: letters, digits, '-' and '_'", path=file, line=number)
        if len(name) > MAX_NAME_LENGTH:
            raise ManifestError(f"a process name is at most {MAX_NAME_LENGTH} characters, this one has {len(name)}", path=file, line=number)
        if name in processes:
            raise ManifestError(f"process {name!r} is defined twice", path=file, line=number)
        processes[name] = (command, number)
    if not processes:
        raise ManifestError("no processes defined (lines 'name: command')", path=file, line=1)
    return processes


def ports(names: list[str], env: Mapping[str, str], env_file: str) -> dict[str, int]:
    """The PORT of each process: from the .env's PORT (default 5000), 100 apart."""
    try:
        base = int(env.get("PORT", DEFAULT_PORT))
    except ValueError:
        raise ManifestError(f"PORT must be a number, got {env['PORT']!r}", path=env_file) from None
    given = {name: base + PORT_STEP * i for i, name in enumerate(names)}
    for name, port in given.items():
        if not 1 <= port <= MAX_PORT:
            raise ManifestError(f"PORT {base} gives {name} port {port}, outside 1 to {MAX_PORT}", path=env_file)
    return given
