"""`procctl run` and `procctl check`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from procctl.cli.app import (
    FileOption,
    app,
    color_wanted,
    complete_name,
    complete_name_list,
    load_manifest_option,
    make_console,
    parse_duration_option,
)
from procctl.errors import UsageError
from procctl.jsonout import dumps

if TYPE_CHECKING:
    from procctl.cluster.executor import DaskExecutor
    from procctl.config.manifest import Manifest
    from procctl.config.plan import Plan
    from procctl.control.server import ControlServer
    from procctl.engine.supervisor import Supervisor
    from procctl.events import Bus
    from procctl.ui.live_model import InstanceInfo
    from procctl.engine.outcome import RunResult
    from procctl.ui.sinks import EventStream
    from procctl.engine.predict import Prediction
    from procctl.engine.store import StateDir
    from procctl.events import Bus
    from procctl.ui.live import LiveView
    from procctl.ui.writer import Writer


NamesArg = Annotated[
    Optional[list[str]],
    typer.Argument(metavar="[NAME]...", help="Run only these processes (and what they depend on).", show_default=False, autocompletion=complete_name),
]
ParallelOption = Annotated[
    Optional[str],
    typer.Option("--parallel", "-j", metavar="N|auto", help="Pool size: N processes at once, or 'auto' (adapts to load; with -j N too, N is the cap).", show_default=False),
]
ScheduleOption = Annotated[
    Optional[str], typer.Option("--schedule", metavar="ORDER", help="Queue order: fifo, or longest-first (by durations in the run history).", show_default=False)
]
TimeoutOption = Annotated[
    Optional[str], typer.Option("--timeout", metavar="DURATION", help="Stop everything after this long (e.g. 10m) and exit 124.", show_default=False)
]
KeepGoingOption = Annotated[bool, typer.Option("--keep-going", help="A failure does not stop the rest (overrides fail_fast).")]
OnlyOption = Annotated[
    Optional[list[str]],
    typer.Option("--only", metavar="NAMES", help="Run only these processes (comma-separated, repeatable) and what they depend on.", show_default=False, autocompletion=complete_name_list),
]
ExceptOption = Annotated[
    Optional[list[str]],
    typer.Option("--except", metavar="NAMES", help="Leave these processes out (comma-separated, repeatable), even when others depend on them.", show_default=False, autocompletion=complete_name_list),
]
NoDepsOption = Annotated[bool, typer.Option("--no-deps", help="Do not bring in the dependencies of the picked processes.")]
CanDieOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--can-die",
        metavar="NAMES",
        help="These processes (comma-separated, repeatable) may end without stopping the rest (exit_on_end off; a Procfile's default is on).",
        show_default=False,
        autocompletion=complete_name_list,
    ),
]
AnyCanDieOption = Annotated[bool, typer.Option("--any-can-die", help="No process that ends stops the rest (exit_on_end off for all).")]
NoWatchOption = Annotated[bool, typer.Option("--no-watch", help="Ignore every process's `watch`: no restart when files change.")]


@app.command()
def run(
    names: NamesArg = None,
    file: FileOption = None,
    parallel: ParallelOption = None,
    schedule: ScheduleOption = None,
    plain_output: Annotated[bool, typer.Option("--plain", help="Prefixed lines even on a terminal.")] = False,
    tail: Annotated[
        Optional[int], typer.Option("--tail", metavar="N", help="Lines of merged output under the live table (default: what fits).", min=0, show_default=False)
    ] = None,
    timeout: TimeoutOption = None,
    keep_going: KeepGoingOption = False,
    only: OnlyOption = None,
    exclude: ExceptOption = None,
    no_deps: NoDepsOption = False,
    can_die: CanDieOption = None,
    any_can_die: AnyCanDieOption = False,
    output: Annotated[
        str, typer.Option("--output", metavar="MODE", help="interleaved: prefixed lines as they come; grouped: each run's output as one block when it ends.")
    ] = "interleaved",
    events_to: Annotated[
        Optional[str], typer.Option("--events", metavar="FILE", help="Write every event as JSON lines to FILE ('-': stdout, and the human output goes to stderr).", show_default=False)
    ] = None,
    junit: Annotated[Optional[str], typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report to FILE when the run ends ('-': stdout, and the human output goes to stderr).", show_default=False)] = None,
    json_summary: Annotated[bool, typer.Option("--json", help="Print the final summary as JSON on stdout instead of a table (the human output goes to stderr).")] = False,
    no_watch: NoWatchOption = False,
    executor: Annotated[
        Optional[str],
        typer.Option(
            "--executor",
            help="Where `each` jobs run: local, dask (the cluster of [settings] dask), or dask://HOST:PORT (that cluster's scheduler).",
            show_default=False,
        ),
    ] = None,
    rerun_failed: Annotated[
        bool, typer.Option("--rerun-failed", help="Run only the `each` items that failed in the last recorded run of their process.")
    ] = False,
) -> None:
    """Run the manifest's processes in the foreground until they end or Ctrl-C."""
    from procctl.config.executors import with_executor
    from procctl.config.plan import build_plan
    from procctl.control.address import socket_path
    from procctl.control.server import ControlServer, serving
    from procctl.engine.operations import Operations
    from procctl.engine.loop import run_supervisor
    from procctl.engine.store import StateDir
    from procctl.engine.supervisor import Supervisor
    from procctl.events import Bus
    from procctl.ui import plain
    from procctl.ui.writer import Writer

    if output not in ("interleaved", "grouped"):
        raise UsageError(f"--output: expected interleaved or grouped, got {output!r}")
    if events_to == "-" and (json_summary or junit == "-"):
        raise UsageError("--events - takes stdout: write the other report to a file")
    if json_summary and junit == "-":
        raise UsageError("--json takes stdout: write the JUnit report to a file")
    run_timeout = parse_duration_option("--timeout", timeout)
    def read_manifest(path: Path | None) -> Manifest:
        """The manifest read and picked from as this run does: at the start,
        and again for each reload."""
        return with_executor(selected_manifest(load_manifest_option(path), names, only, exclude, no_deps, can_die, any_can_die), executor)

    manifest = read_manifest(file)
    state_dir = StateDir.beside(manifest.path)
    only_items = failed_items(manifest, state_dir) if rerun_failed else None
    options = plan_options(parallel, schedule)
    plan = build_plan(manifest, only_items=only_items, **options)
    warn_of_starvation(plan)
    state_dir.prepare()
    # Held until this process ends: one supervisor per manifest.
    lock, detached = hold_supervisor_lock(state_dir, manifest.path)
    bus = Bus()
    stopping_for_stdout = _StdoutClosed()
    stream = _open_event_stream(events_to, bus, stopping_for_stdout if events_to == "-" else None)
    if junit is not None:
        _check_writable("--junit", junit)
    cluster = connect_cluster(manifest)
    if cluster is not None and "parallel" not in options and not manifest.settings.max_parallel_given:
        # Nothing bounds the pool but this machine's CPUs: on a cluster, its
        # threads do, twice over, so that each worker thread has its next job
        # there when one ends (with one per thread, each waited a round trip
        # to procctl between jobs: 59 ms a job, measured).
        options = {**options, "parallel": 2 * max(cluster.threads, 1)}
        plan = build_plan(manifest, only_items=only_items, **options)

    def read_plan(path: Path | None) -> Plan:
        return build_plan(read_manifest(path), only_items=only_items, **options)

    # With a report on stdout (the event stream, the JSON summary, the JUnit
    # report), people read stderr: stdout stays what a program parses.
    human = sys.stderr if events_to == "-" or json_summary or junit == "-" else sys.stdout
    # Every sink for people writes through this: never on the loop's time.
    # Output nobody reads any more stops the run, as it stops `yes | head`;
    # stderr going away (with the event stream on stdout) does the same.
    human_closed = stopping_for_stdout if human is sys.stdout else _StdoutClosed(stream_name="stderr")
    write = Writer(human.buffer, bus.flow, on_gone=human_closed)
    services: list[Callable[[], AbstractAsyncContextManager[object]]] = []
    grouped: plain.GroupedPrinter | None = None
    if stream is not None:
        bus.subscribe(stream)
    github = plain.github_actions()
    mode = "grouped" if output == "grouped" else "plain" if plain_output else view_mode(human)
    if mode == "grouped":
        grouped = plain.GroupedPrinter(write, color=color_wanted(human), github=github)
        bus.subscribe(grouped)
    elif mode == "live":
        view = live_view(plan, state_dir, tail, human, write)
        bus.subscribe(view.queue)
        services.append(view.session)
    elif mode == "plain":
        bus.subscribe(plain.PlainPrinter(write, color=color_wanted(human), names=plan.jobs.longest_names(), processes=plan.order))
    supervisor = Supervisor(
        plan,
        bus,
        state_dir,
        fail_fast=False if keep_going else None,
        run_timeout_s=run_timeout,
        predictions=load_predictions(plan, state_dir, lambda message: typer.echo(f"procctl: warning: {message}", err=True)),
        executors={"dask": cluster} if cluster is not None else None,
        control_socket=socket_path(state_dir),
        detached=detached,
        edited_plan=lambda: read_plan(manifest.path),
        watch=not no_watch,
    )
    stopping_for_stdout.supervisor = human_closed.supervisor = supervisor
    server = ControlServer(Operations(supervisor), socket_path(state_dir), manifest.path, bus)
    services.insert(0, lambda: serving(server))
    if mode == "interactive":
        services.append(_interactive(server, bus, supervisor, plan, state_dir, tail))
    try:
        result = run_supervisor(supervisor, services=services)
        if grouped is not None:
            grouped.finish(result)
    finally:
        write.close()
        if stream is not None:
            stream.close()
        if cluster is not None:
            cluster.close()
    if github:
        for line in plain.github_annotations(result):
            human.write(line + "\n")
        human.flush()
    if junit is not None:
        _write_junit(result, manifest.path, junit)
    _print_summary(result, json_summary, sys.stdout if json_summary else human)
    raise typer.Exit(result.exit_code)


def selected_manifest(
    manifest: Manifest,
    names: list[str] | None,
    only: list[str] | None,
    exclude: list[str] | None,
    no_deps: bool,
    can_die: list[str] | None,
    any_can_die: bool,
) -> Manifest:
    """The processes `run` (and `up`) were asked to run."""
    from procctl.config.select import allow_to_die, select_processes

    manifest = select_processes(manifest, [*(names or []), *_name_list(only)], exclude=_name_list(exclude), with_dependencies=not no_deps)
    return allow_to_die(manifest, _name_list(can_die), everything=any_can_die)


def selected_plan(
    manifest: Manifest,
    names: list[str] | None,
    only: list[str] | None,
    exclude: list[str] | None,
    no_deps: bool,
    can_die: list[str] | None,
    any_can_die: bool,
    parallel: str | None,
    schedule: str | None,
) -> Plan:
    """The plan of what `run` (and `up`) were asked to run."""
    from procctl.config.plan import build_plan

    return build_plan(selected_manifest(manifest, names, only, exclude, no_deps, can_die, any_can_die), **plan_options(parallel, schedule))


def connect_cluster(manifest: Manifest) -> DaskExecutor | None:
    """The Dask cluster the manifest's `each` jobs go to, reached and
    checked before anything starts; None when every job runs here."""
    from procctl.config.executors import cluster_address, uses_dask

    if not uses_dask(manifest):
        return None
    from procctl.cluster.executor import DaskExecutor

    return DaskExecutor.connect(cluster_address(manifest), manifest)


def failed_items(manifest: Manifest, state_dir: StateDir) -> dict[str, set[str]]:
    """`--rerun-failed`: for each `each` process of the run, the items that
    failed in its last recorded run. Raises UsageError when there is nothing
    to take them from; exits 0 (saying so) when nothing failed."""
    from procctl.engine.history import HistoryError, last_failed_items
    from procctl.errors import StateDirError

    pools = [name for name, spec in manifest.processes.items() if spec.each is not None]
    if not pools:
        raise UsageError("--rerun-failed: no `each` process in this run")
    found: dict[str, set[str]] = {}
    try:
        for name in pools:
            last = last_failed_items(state_dir.database, manifest.path, name)
            if last is not None:
                found[name] = set(last)
    except (HistoryError, StateDirError) as exc:
        raise UsageError(f"--rerun-failed: cannot read the run history: {exc}") from None
    if not found:
        raise UsageError(f"--rerun-failed: no recorded run of {', '.join(pools)} to take failed items from")
    if not any(found.values()):
        typer.echo(f"procctl: nothing to rerun: no item failed in the last run of {', '.join(found)}", err=True)
        raise typer.Exit(0)
    for name in pools:
        found.setdefault(name, set())
    return found


def warn_of_starvation(plan: Plan) -> None:
    """One line on stderr when some pooled instance could wait for ever."""
    warning = plan.starvation()
    if warning:
        typer.echo(f"procctl: warning: {warning}", err=True)


def hold_supervisor_lock(state_dir: StateDir, manifest_path: Path) -> tuple[int, bool]:
    """The supervisor's lock: the one `up -d` took for us, else our own; and
    whether `up -d` started us (detached)."""
    from procctl.engine.store import LOCK_FD_VAR

    passed = os.environ.pop(LOCK_FD_VAR, None)  # not for the children
    lock = state_dir.adopt_lock(passed) if passed else None
    detached = lock is not None
    if lock is None:
        lock = state_dir.lock_supervisor(manifest_path)
    state_dir.record_supervisor(lock, os.getpid())
    return lock, detached


class _StdoutClosed:
    """Told by a writer of our output that its reader went away (`| head`,
    a closed terminal): says so on stderr and stops the run gracefully,
    which then exits STDOUT_CLOSED_EXIT (141, as a shell reports a process
    that SIGPIPE ended)."""

    def __init__(self, stream_name: str = "stdout") -> None:
        self.stream_name = stream_name
        self.supervisor: Supervisor | None = None
        self.happened = False

    def __call__(self) -> None:
        import asyncio

        from procctl.errors import STDOUT_CLOSED_EXIT

        if self.happened:
            return
        self.happened = True
        fd = 1 if self.stream_name == "stdout" else 2
        # Nothing more can reach it: later writes (the summary, the
        # interpreter's last flush) go nowhere instead of failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        other = sys.stderr if fd == 1 else sys.stdout
        try:
            other.write(f"procctl: {self.stream_name} was closed (its reader went away): stopping everything gracefully\n")
            other.flush()
        except (OSError, ValueError):
            pass
        supervisor = self.supervisor
        if supervisor is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the run is over already
        # A bus subscriber tells us: the stop starts on the loop's next turn.
        loop.call_soon(lambda: supervisor.request_stop(f"{self.stream_name} was closed", exit_code=STDOUT_CLOSED_EXIT))


def _name_list(values: list[str] | None) -> list[str]:
    """`--only a,b --only c` → [a, b, c]."""
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


def _open_event_stream(target: str | None, bus: Bus, on_stdout_closed: Callable[[], None] | None) -> EventStream | None:
    from procctl.ui.sinks import EventStream

    if target is None:
        return None
    try:
        return EventStream.open(target, bus.flow, on_stdout_closed)
    except OSError as exc:
        raise UsageError(f"--events {target}: {exc.strerror or exc}") from None


def _check_writable(flag: str, target: str) -> None:
    """Create the report file now, so that a bad path fails before anything runs."""
    if target == "-":
        return
    try:
        with open(target, "ab"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag} {target}: {exc.strerror or exc}") from None


def _write_junit(result: RunResult, manifest_path: Path, target: str) -> None:
    from procctl.ui.sinks import write_junit

    try:
        write_junit(result, manifest_path.parent.name or str(manifest_path), target)
    except OSError as exc:
        typer.echo(f"procctl: warning: --junit {target}: {exc.strerror or exc}", err=True)


def view_mode(human: TextIO) -> str:
    """How `run` shows itself: 'interactive' (the view you work in) when
    there is a terminal to read keys from and to draw on; 'live' (the table,
    drawn only) when only the output is a terminal; else 'plain' lines —
    also on a dumb terminal."""
    if not human.isatty() or os.environ.get("TERM", "") == "dumb":
        return "plain"
    # The interactive view reads keys on stdin and draws on stderr.
    streams = (sys.__stdin__, sys.__stderr__)
    if all(stream is not None and stream.isatty() for stream in streams):
        return "interactive"
    return "live"


def _interactive(server: ControlServer, bus: Bus, supervisor: Supervisor, plan: Plan, state_dir: StateDir,
                 tail: int | None) -> Callable[[], AbstractAsyncContextManager[object]]:
    """The interactive view as a service of the run: open before the first
    child starts, closed after the last ended."""
    from procctl.cli.faces import InProcess
    from procctl.ui.tui.app import LiveApp, running

    face = InProcess(server, bus, _instance_infos(plan, state_dir), plan.max_parallel, lambda: os.kill(os.getpid(), signal.SIGINT))
    return lambda: running(LiveApp(face, tail=tail), on_failure=lambda: supervisor.request_stop("the live view ended"))


def _instance_infos(plan: Plan, state_dir: StateDir) -> list[InstanceInfo]:
    from procctl.config.plan import EAGER_JOBS
    from procctl.ui.live_model import InstanceInfo

    # A big pool's rows come as its instances start (it is made as it runs).
    return [
        InstanceInfo(job.name, job.process, str(state_dir.log_path(job.log_name)), each=job.item is not None, pooled=job.pooled)
        for segment in plan.jobs.segments
        if len(segment) <= EAGER_JOBS
        for job in segment
    ]


def live_view(plan: Plan, state_dir: StateDir, tail: int | None, out: TextIO, write: Writer) -> LiveView:
    """The live table for a terminal (`out`: stderr when stdout carries the
    event stream), drawn through `write`: one row per planned instance."""
    from procctl.ui.live import LiveView
    from procctl.ui.writer import TextFile

    return LiveView(make_console(TextFile(write, out)), _instance_infos(plan, state_dir), max_parallel=plan.max_parallel, tail=tail, writer=write)


def plan_options(parallel: str | None, schedule: str | None) -> dict[str, object]:
    """-j N | -j auto and --schedule as build_plan's keywords."""
    options: dict[str, object] = {}
    if parallel is not None:
        if parallel.strip().lower() == "auto":
            options["auto"] = True
        elif parallel.strip().isdigit() and int(parallel) >= 1:
            options["parallel"] = int(parallel)
        else:
            raise UsageError(f"--parallel: expected a number of at least 1 or 'auto', got {parallel!r}")
    if schedule is not None:
        if schedule not in ("fifo", "longest-first"):
            raise UsageError(f"--schedule: expected fifo or longest-first, got {schedule!r}")
        options["schedule"] = schedule
    return options


def load_predictions(plan: Plan, state_dir: StateDir, warn: Callable[[str], None], *, always: bool = False) -> Mapping[str, Prediction]:
    """Predictions from the run history, when the schedule or the adaptive
    pool uses them (or `always`, for check). An unreadable history is a
    warning, not an error."""
    from procctl.engine.history import HistoryError
    from procctl.engine.predict import past_runs, predict
    from procctl.errors import StateDirError

    if not always and plan.schedule != "longest-first" and not plan.auto:
        return {}
    try:
        runs = past_runs(state_dir.database, plan.manifest.path)
    except (HistoryError, StateDirError) as exc:
        warn(f"no predictions: {exc}")
        return {}
    return predict(plan.jobs, runs)


def _print_summary(result: RunResult, as_json: bool, out: TextIO) -> None:
    from procctl.ui.tables import summary_json, summary_lines, summary_table

    try:
        if as_json:
            out.write(dumps(summary_json(result)))
            out.flush()
            return
        console = make_console(out)
        console.print(summary_table(result))  # type: ignore[arg-type]
        for line in summary_lines(result):  # type: ignore[arg-type]
            console.print(line, highlight=False, markup=False)
    except OSError:
        # Nobody reads it any more (a closed pipe, a closed terminal: EPIPE,
        # EIO): the run is over and recorded; the exit code says how it went.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)


@app.command()
def check(
    file: FileOption = None,
    parallel: Annotated[Optional[str], typer.Option("--parallel", "-j", help="Pool size to plan with (N or auto).", show_default=False)] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="Queue order to plan with: fifo or longest-first.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Validate the manifest and print the plan: order, pool, instances, predictions."""
    from procctl.config.plan import build_plan
    from procctl.engine.store import StateDir
    from procctl.ui.plan import plan_json, plan_table, pool_text, predictions_table

    plan = build_plan(load_manifest_option(file), **plan_options(parallel, schedule))
    state_dir = StateDir.beside(plan.manifest.path)
    predictions = load_predictions(plan, state_dir, lambda message: typer.echo(f"procctl: warning: {message}", err=True), always=True)
    if as_json:
        sys.stdout.write(dumps(plan_json(plan, predictions)))
        return
    warn_of_starvation(plan)
    console = make_console()
    console.print(plan_table(plan))
    if predictions:
        console.print(predictions_table(plan, predictions))
    console.print(
        f"{plan.manifest.path}: valid; {len(plan.order)} processes, {len(plan.jobs)} instances, {pool_text(plan)}, schedule {plan.schedule}",
        highlight=False,
        markup=False,
    )


