"""`procctl completion`: the shell completion script, printed or installed.

What the script asks procctl back (commands, options, process names) is
answered by Typer's completion and the functions in `procctl.cli.app`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from procctl.cli.app import app

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


@app.command()
def completion(
    shell: Annotated[
        Optional[str],
        typer.Argument(metavar="[SHELL]", help="bash, zsh, fish, powershell or pwsh. Default: the shell procctl was started from.", show_default=False),
    ] = None,
    install: Annotated[bool, typer.Option("--install", help="Install it where that shell reads it, instead of printing it.")] = False,
) -> None:
    """Print the shell completion script: commands, options and the manifest's process names."""
    import typer.completion

    from procctl.errors import ProcctlError, UsageError

    if shell is None:
        shell = _shell_started_from()
    if shell not in SHELLS:
        raise UsageError(f"completion: unknown shell {shell!r}: bash, zsh, fish, powershell or pwsh")
    if not install:
        typer.echo(typer.completion.get_completion_script(prog_name="procctl", complete_var="_PROCCTL_COMPLETE", shell=shell))
        return
    try:
        _, path = typer.completion.install(shell=shell, prog_name="procctl", complete_var="_PROCCTL_COMPLETE")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ProcctlError(f"completion: cannot install the {shell} completion: {where}{exc.strerror or exc}") from None
    typer.echo(f"{shell} completion installed in {path}; it takes effect in the shells started from now on")


def _shell_started_from() -> str:
    """The nearest shell among procctl's ancestors (a shell that runs a
    script, /bin/sh in a Dockerfile or a Makefile, counts too)."""
    import shellingham  # Typer's own dependency, which it detects shells with

    from procctl.errors import UsageError

    try:
        name, _ = shellingham.detect_shell()
    except shellingham.ShellDetectionFailure:
        name = None
    if name not in SHELLS:
        started_from = f" (started from {name})" if name else ""
        raise UsageError(f"completion: cannot tell which shell to complete{started_from}: name it, as in 'procctl completion bash'")
    return str(name)
