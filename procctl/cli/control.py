"""Control commands: talk to the supervisor of a manifest over its socket.

They import neither the engine's loop nor rich unless they draw a table, so
that `procctl status --json` answers about as fast as Python starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from procctl.cli.app import FileOption, app, complete_assignment, complete_name, make_console
from procctl.errors import UsageError
from procctl.jsonout import dumps


def call(file: Path | None, verb: str, args: dict[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
    from procctl.control import client

    return client.call(file, verb, args, timeout_s=timeout_s)


def _emit(result: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(dumps(result))
    elif text:
        typer.echo(text)


NamesArg = Annotated[
    Optional[list[str]],
    typer.Argument(metavar="[NAME]...", help="Processes (all their instances) or instances (web.2, thumb[7]).", show_default=False, autocompletion=complete_name),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every instance.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the reply as JSON.")]


def _names(names: list[str] | None, everything: bool) -> list[str]:
    if not names and not everything:
        raise UsageError("name at least one process or instance (or use --all)")
    return names or []


@app.command()
def status(file: FileOption = None, as_json: JsonOption = False) -> None:
    """State, pid, uptime, restarts, CPU time and RSS of each process of the running supervisor."""
    result = call(file, "status")
    if as_json:
        _emit(result, True, "")
        return
    from procctl.ui.tables import status_table

    make_console().print(status_table(result))


@app.command()
def pause(names: NamesArg = None, everything: AllOption = False, file: FileOption = None, as_json: JsonOption = False) -> None:
    """SIGSTOP each named process's whole tree; --all also holds the queue."""
    result = call(file, "pause", {"names": _names(names, everything), "all": everything})
    held = " (queue held)" if result["queue_held"] else ""
    _emit(result, as_json, f"paused: {', '.join(result['paused']) or 'nothing'}{held}")


@app.command()
def resume(names: NamesArg = None, everything: AllOption = False, file: FileOption = None, as_json: JsonOption = False) -> None:
    """SIGCONT each named process's tree; --all also releases the queue."""
    result = call(file, "resume", {"names": _names(names, everything), "all": everything})
    _emit(result, as_json, f"resumed: {', '.join(result['resumed']) or 'nothing'}")


@app.command()
def kill(
    names: NamesArg = None,
    signal_name: Annotated[
        Optional[str], typer.Option("--signal", "-s", help="Just deliver this signal (TERM, HUP, USR1, 9...) to the group.", show_default=False)
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop processes (graceful, then SIGKILL after stop_timeout) and do not restart them."""
    args: dict[str, Any] = {"names": _names(names, False)}
    if signal_name is not None:
        args["signal"] = signal_name
    result = call(file, "kill", args)
    if "signalled" in result:
        _emit(result, as_json, f"sent {result['signal']} to: {', '.join(result['signalled']) or 'nothing'}")
    else:
        _emit(result, as_json, f"stopping: {', '.join(result['stopping']) or 'nothing'}")


@app.command()
def restart(names: NamesArg = None, file: FileOption = None, as_json: JsonOption = False) -> None:
    """Restart processes now (a stopped one starts again)."""
    result = call(file, "restart", {"names": _names(names, False)})
    _emit(result, as_json, f"restarting: {', '.join(result['restarting']) or 'nothing'}")


@app.command()
def start(names: NamesArg = None, file: FileOption = None, as_json: JsonOption = False) -> None:
    """Start processes that have stopped or ended."""
    result = call(file, "start", {"names": _names(names, False)})
    text = f"starting: {', '.join(result['starting']) or 'nothing'}"
    if result["already_running"]:
        text += f"; already running: {', '.join(result['already_running'])}"
    _emit(result, as_json, text)


@app.command()
def scale(
    assignment: Annotated[str, typer.Argument(metavar="NAME=N", help="The number of replicas N of process NAME.", autocompletion=complete_assignment)],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the number of replicas of a process at run time."""
    name, sep, count = assignment.partition("=")
    if not sep or not name or not count.strip().isdigit():
        raise UsageError(f"scale: expected NAME=N (e.g. web=3), got {assignment!r}")
    result = call(file, "scale", {"process": name, "replicas": int(count)})
    parts = [f"{result['process']}: {result['replicas']} replicas"]
    if result["added"]:
        parts.append(f"started {', '.join(result['added'])}")
    if result["removed"]:
        parts.append(f"stopping {', '.join(result['removed'])}")
    _emit(result, as_json, "; ".join(parts))


@app.command()
def pool(
    size: Annotated[Optional[int], typer.Argument(metavar="[SIZE]", help="Jobs at once from now on (under auto: the cap); without it, show the pool.", show_default=False)] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the pool, or resize it while it runs (on a cluster: the jobs in flight there)."""
    args: dict[str, Any] = {} if size is None else {"size": size}
    result = call(file, "pool", args)
    auto = f", auto up to {result['cap']}" if result["auto"] else ""
    _emit(result, as_json, f"pool: {result['size']} at once{auto}; {result['running']} running, {result['waiting']} waiting")


@app.command()
def send(
    arguments: Annotated[list[str], typer.Argument(metavar="[NAME] TEXT...", help="NAME TEXT, or with --all just TEXT.", autocompletion=complete_name)],
    everything: Annotated[bool, typer.Option("--all", help="Send to every instance.")] = False,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a line of text to the stdin of processes."""
    if everything:
        names, text = [], " ".join(arguments)
    elif len(arguments) < 2:
        raise UsageError("send: expected NAME TEXT (or --all TEXT)")
    else:
        names, text = [arguments[0]], " ".join(arguments[1:])
    result = call(file, "send", {"names": names, "all": everything, "text": text})
    unread = f"; not sent, its stdin is full: {', '.join(result['not_read'])}" if result.get("not_read") else ""
    _emit(result, as_json, f"sent to: {', '.join(result['sent']) or 'nothing'}{unread}")
    if unread:
        # A script that sends work must be able to tell that it was not delivered.
        raise typer.Exit(1)


@app.command()
def limits(
    names: NamesArg = None,
    memory: Annotated[Optional[str], typer.Option("--memory", help="RSS of the whole tree (e.g. 256MiB); on_limit applies when exceeded.", show_default=False)] = None,
    cpu_time: Annotated[Optional[str], typer.Option("--cpu-time", help="RLIMIT_CPU per process (e.g. 60s).", show_default=False)] = None,
    nofile: Annotated[Optional[int], typer.Option("--nofile", help="RLIMIT_NOFILE: open files per process.", show_default=False)] = None,
    nproc: Annotated[Optional[int], typer.Option("--nproc", help="RLIMIT_NPROC: processes of the user.", show_default=False)] = None,
    cpu_percent: Annotated[Optional[float], typer.Option("--cpu-percent", help="Share of one core for the tree (100 = a core).", show_default=False)] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each limit, its mechanism and current usage; with options, change them live and for restarts."""
    given = {"memory": memory, "cpu_time": cpu_time, "nofile": nofile, "nproc": nproc, "cpu_percent": cpu_percent}
    changes: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    args: dict[str, Any] = {"names": _names(names, False)}
    if changes:
        args["set"] = changes
    result = call(file, "limits", args)
    if as_json:
        _emit(result, True, "")
        return
    from procctl.ui.tables import limits_table

    make_console().print(limits_table(result))


@app.command()
def reload(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what a reload would do, and change nothing.")] = False,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply the edited manifest to the running supervisor: start new, stop removed, restart changed, keep the rest."""
    result = call(file, "reload", {"dry_run": dry_run})
    if as_json:
        _emit(result, True, "")
        return
    lines = ["dry run: nothing changed; a reload would do this:"] if dry_run else []
    for step in result["processes"]:
        lines.append(f"{step['process']}: {reload_line(step)}")
    lines.extend(f"settings: {change}" for change in result["settings"])
    lines.extend(f"note: {note}" for note in result["notes"])
    typer.echo("\n".join(lines))


def reload_line(step: dict[str, Any]) -> str:
    """`restarted (cmd changed): web.1, web.2`, `added: worker`, `unchanged`."""
    action = step["action"]
    changes = f" ({', '.join(step['changes'])} changed)" if step["changes"] and action not in ("added", "removed") else ""
    parts = []
    if step["restarted"]:
        parts.append(("restarts " if action != "restarted" else "") + ", ".join(step["restarted"]))
    if step["started"]:
        parts.append(("starts " if action != "added" else "") + ", ".join(step["started"]))
    if step["stopped"]:
        parts.append(("stops " if action != "removed" else "") + ", ".join(step["stopped"]))
    if action == "unchanged" and step["kept"]:
        parts.append("keeps " + ", ".join(step["kept"]))
    return f"{action}{changes}" + (": " + "; ".join(parts) if parts else "")
