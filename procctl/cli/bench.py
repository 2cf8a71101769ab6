"""`procctl benchmark`: hyperfine-style timing of command lines or manifest
processes, with a pool; and `--spawn`, procctl's own pool against xargs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Optional

import typer

from procctl.cli.app import FileOption, app, complete_name, load_manifest_option, make_console, parse_duration_option
from procctl.errors import UsageError

if TYPE_CHECKING:
    from procctl.bench.result import Command

DEFAULT_MIN_RUNS = 10
DEFAULT_MAX_TIME_S = 3.0
SPAWN_ROUNDS = 3
SPAWN_PARALLEL = 8


def _warn(message: str) -> None:
    typer.echo(f"procctl: warning: {message}", err=True)


def _shell_argv(text: str, shell: str) -> tuple[tuple[str, ...], bool]:
    if shell != "none":
        return (shell, "-c", text), True
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"cannot split {text!r} with --shell none: {exc}") from None
    if not argv:
        raise UsageError("an empty command cannot be timed")
    return argv, False


def _commands(texts: list[str], processes: list[str], file: Path | None, shell: str) -> list[Command]:
    from procctl.bench.result import Command
    from procctl.config.command import argv_of
    from procctl.config.locate import current_directory
    from procctl.engine.history import command_text

    commands: list[Command] = []
    if processes:
        from procctl.config.plan import build_plan
        from procctl.config.select import resolve

        manifest = load_manifest_option(file)
        plan = build_plan(manifest)
        firsts = {process: plan.jobs_of(process)[:1] for process in plan.order}
        for name in processes:
            jobs = resolve([name], firsts)
            if not jobs:
                raise UsageError(f"--process {name}: it has no instance to time (an `each` with no items)")
            job = jobs[0]  # A replicated or `each` process: its first instance.
            via_shell = isinstance(job.cmd, str)
            argv = argv_of(job.cmd)
            env = {**os.environ, **job.env}
            commands.append(Command(name, argv, job.cwd, env, via_shell, command_text(job.cmd), process=name, manifest=manifest.path))
    for text in texts:
        if not text.strip():
            raise UsageError("an empty command cannot be timed")
        argv, via_shell = _shell_argv(text, shell)
        commands.append(Command(text, argv, current_directory(), dict(os.environ), via_shell, text))
    return commands


def _open_exports(targets: dict[str, str | None]) -> dict[str, tuple[str, IO[str] | None]]:
    """Create the export files before the long run, so that a bad path fails
    at once. '-' is stdout (None here)."""
    opened: dict[str, tuple[str, IO[str] | None]] = {}
    try:
        for flag, path in targets.items():
            if path is None:
                continue
            opened[flag] = (path, None if path == "-" else open(path, "w", encoding="utf-8"))
    except OSError as exc:
        _close_exports(opened, remove=True)
        raise UsageError(f"{flag} {path}: {exc.strerror or exc}") from None
    return opened


def _close_exports(opened: dict[str, tuple[str, IO[str] | None]], *, remove: bool) -> None:
    for path, handle in opened.values():
        if handle is not None:
            handle.close()
            if remove:
                Path(path).unlink(missing_ok=True)


@app.command("benchmark")
def benchmark(
    commands: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="[COMMAND]...", help="Command lines to time, one argument each (quote them); run through sh unless --shell none.", show_default=False),
    ] = None,
    process: Annotated[
        Optional[list[str]],
        typer.Option("--process", metavar="NAME", help="Time a manifest process instead (its cmd, env and cwd); repeatable.", show_default=False, autocompletion=complete_name),
    ] = None,
    file: FileOption = None,
    runs: Annotated[Optional[int], typer.Option("--runs", "-r", help="Exactly N timed runs per command (with --spawn: N rounds, default 3).", min=1, show_default=False)] = None,
    min_runs: Annotated[Optional[int], typer.Option("--min-runs", "-m", help=f"At least N timed runs (default {DEFAULT_MIN_RUNS}).", min=1, show_default=False)] = None,
    max_time: Annotated[
        Optional[str], typer.Option("--max-time", help="Keep starting runs for this long, past --min-runs (default 3s).", show_default=False)
    ] = None,
    warmup: Annotated[int, typer.Option("--warmup", "-w", help="Untimed runs before the timed ones.", min=0)] = 0,
    parallel: Annotated[
        Optional[int], typer.Option("--parallel", "-j", help="Runs in flight at once (default 1; with --spawn, 8).", min=1, show_default=False)
    ] = None,
    prepare: Annotated[
        Optional[str], typer.Option("--prepare", "-p", metavar="CMD", help="A command run (untimed) before each run; it must succeed (as hyperfine's -p).", show_default=False)
    ] = None,
    shell: Annotated[str, typer.Option("--shell", "-S", metavar="SHELL", help="The shell of the command lines, or 'none' to split them and exec directly.")] = "sh",
    no_shell: Annotated[bool, typer.Option("-N", help="The same as --shell none (as hyperfine's -N).")] = False,
    ignore_failure: Annotated[bool, typer.Option("--ignore-failure", "-i", help="Time runs that exit non-zero instead of failing.")] = False,
    export_json: Annotated[Optional[str], typer.Option("--export-json", help="Write the results as JSON in hyperfine's layout, with every run's figures, to FILE ('-': stdout).", show_default=False)] = None,
    export_markdown: Annotated[Optional[str], typer.Option("--export-markdown", help="Write the results table as Markdown to FILE ('-': stdout).", show_default=False)] = None,
    export_csv: Annotated[Optional[str], typer.Option("--export-csv", help="Write one CSV row per command, hyperfine's columns first, to FILE ('-': stdout).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON export instead of the table.")] = False,
    spawn: Annotated[bool, typer.Option("--spawn", help="Time procctl's own pool on /bin/true jobs against xargs -P.")] = False,
    tasks: Annotated[int, typer.Option("--tasks", metavar="N", help="With --spawn: how many /bin/true tasks to run (-j says how many at once).", min=1)] = 2000,
    old_jobs: Annotated[Optional[int], typer.Option("--jobs", help="Deprecated spelling of --tasks.", hidden=True, min=1, show_default=False)] = None,
) -> None:
    """Time commands like hyperfine, with -j runs in flight: mean ± σ, min, median, p95, max, CPU, peak RSS, runs/s."""
    if old_jobs is not None:
        _warn("'benchmark --jobs' is deprecated: it counts tasks, where make and GNU parallel mean how many at once; use --tasks")
        tasks = old_jobs
    if no_shell:
        shell = "none"
    if spawn:
        if commands or process:
            raise UsageError("--spawn times procctl itself: give no commands and no --process with it")
        _spawn(tasks, parallel or SPAWN_PARALLEL, runs or SPAWN_ROUNDS, as_json)
        return
    if not commands and not process:
        hint = ""
        if prepare is not None:
            # `-p NAME` timed a process before -p became hyperfine's --prepare.
            hint = f"; -p is --prepare, as in hyperfine: to time a process of the manifest, use --process {prepare}"
        raise UsageError(f"nothing to time: give a command line (procctl benchmark 'sleep 0.1') or --process NAME{hint}")
    if runs is not None and (min_runs is not None or max_time is not None):
        raise UsageError("--runs fixes the number of runs: drop --min-runs and --max-time, or --runs")

    from procctl.bench import export
    from procctl.bench.record import record_runs
    from procctl.bench.result import BenchmarkError, Options
    from procctl.bench.runner import run_benchmark
    from procctl.ui.bench import ProgressView, comparison_lines, results_table, warning_lines

    todo = _commands(commands or [], process or [], file, shell)
    options = Options(
        runs=runs,
        min_runs=min_runs or DEFAULT_MIN_RUNS,
        max_time_s=parse_duration_option("--max-time", max_time) or DEFAULT_MAX_TIME_S,
        warmup=warmup,
        parallel=parallel or 1,
        prepare=_shell_argv(prepare, shell)[0] if prepare is not None else None,
        shell=None if shell == "none" else shell,
        ignore_failure=ignore_failure,
    )
    exports = _open_exports({"--export-json": export_json, "--export-markdown": export_markdown, "--export-csv": export_csv})
    try:
        with ProgressView() as progress:
            result = run_benchmark(todo, options, on_progress=progress)
    except BaseException:
        _close_exports(exports, remove=True)
        raise
    record_runs(result, _database(todo), _warn)
    if result.failure:
        _close_exports(exports, remove=True)
        raise BenchmarkError(result.failure)
    renderers = {"--export-json": export.to_json, "--export-markdown": export.to_markdown, "--export-csv": export.to_csv}
    to_stdout = []
    for flag, (_, handle) in exports.items():
        text = renderers[flag](result)
        if handle is None:
            to_stdout.append(text)
        else:
            handle.write(text)
    _close_exports(exports, remove=False)
    if as_json or to_stdout:
        sys.stdout.write("".join(([export.to_json(result)] if as_json else []) + to_stdout))
    else:
        console = make_console()
        console.print(results_table(result))
        for line in comparison_lines(result):
            console.print(line, markup=False, highlight=False)
    sys.stdout.flush()
    for line in warning_lines(result):
        _warn(line.removeprefix("warning: "))


def _database(commands: list[Command]) -> Path:
    """Beside the manifest of a -p process; for command lines, where
    `procctl history` looks without -f."""
    from procctl.cli.history import state_database
    from procctl.engine.store import StateDir

    for command in commands:
        if command.manifest is not None:
            return StateDir.beside(command.manifest).database
    return state_database(None)


def _spawn(tasks: int, parallel: int, rounds: int, as_json: bool) -> None:
    from procctl.bench.spawn import spawn_benchmark
    from procctl.jsonout import dumps
    from procctl.ui.bench import format_time, spawn_table

    def on_round(tool: str, number: int, seconds: float) -> None:
        if sys.stderr.isatty():
            typer.echo(f"round {number}/{rounds}: {tool} {format_time(seconds)}", err=True)

    result = spawn_benchmark(tasks, parallel, rounds, on_round)
    if as_json:
        sys.stdout.write(dumps(result.to_dict()))
        return
    console = make_console()
    console.print(spawn_table(result))
    if result.ratio is None:
        typer.echo("xargs is not installed here: no ratio")
    else:
        typer.echo(f"ratio procctl/xargs: {result.ratio:.2f} (jobs/s of procctl run ÷ jobs/s of xargs -P {parallel}; 1.00 = as fast)")
