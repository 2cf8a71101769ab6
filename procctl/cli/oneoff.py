"""`procctl exec`: a one-off command with the project's environment, as
`honcho run`, `foreman run` and `overmind run` give it.

procctl replaces itself with the command (as foreman does): the terminal,
stdin, stdout and every signal are the command's own, and its exit code is
procctl's. Nothing is supervised, logged or recorded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, complete_name
from procctl.errors import CANNOT_EXECUTE, COMMAND_NOT_FOUND, CommandFailed, UsageError

_NOT_ITS_OWN = ("PROCCTL_PROCESS", "PROCCTL_INSTANCE")
"""A one-off is not an instance of the process whose environment it takes."""


def environment(manifest_file: Path | None, process: str | None) -> tuple[dict[str, str], Path]:
    """(the whole environment, the directory) a one-off runs with: this
    environment without what a supervisor tells its own children, then the
    manifest's env and env file; with `process` (a process or an instance
    name), that instance's env, PORT and cwd."""
    from procctl.config.loader import load_manifest
    from procctl.config.locate import current_directory, find_manifest
    from procctl.config.plan import build_plan
    from procctl.config.select import resolve
    from procctl.engine.childenv import stale

    manifest = load_manifest(find_manifest(manifest_file))
    env = {key: value for key, value in os.environ.items() if key not in stale()}
    if process is None:
        env.update(manifest.env)
        return env, current_directory()
    plan = build_plan(manifest)
    first = {name: plan.jobs_of(name)[:1] for name in manifest.processes}
    [job] = resolve([process], first, {job.name: job for job in plan.jobs})
    env.update((key, value) for key, value in job.env.items() if key not in _NOT_ITS_OWN)
    return env, job.cwd


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_(
    command: Annotated[list[str], typer.Argument(metavar="CMD [ARGS]...", help="The command and its arguments (after --).", show_default=False)],
    process: Annotated[
        Optional[str],
        typer.Option("--process", "-p", metavar="NAME", help="Also this process's (or instance's) env, PORT and cwd.", show_default=False, autocompletion=complete_name),
    ] = None,
    file: FileOption = None,
) -> None:
    """Run a command in the foreground with the manifest's environment; exit with its code."""
    if not command:
        raise UsageError("exec: which command? (procctl exec -- CMD [ARGS...])")
    env, cwd = environment(file, process)
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise CommandFailed(f"cannot enter {cwd}: {exc.strerror or exc}", CANNOT_EXECUTE) from None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        raise CommandFailed(f"command not found: {command[0]}", COMMAND_NOT_FOUND) from None
    except OSError as exc:
        raise CommandFailed(f"cannot run {command[0]}: {exc.strerror or exc}", CANNOT_EXECUTE) from None
