"""`procctl run`: the manifest's processes in the foreground, until they end
or Ctrl-C; what it shows and reports on the way. Needs no Typer: the app's
`run` command and the quick form both call `run` here."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from procctl.cli.common import color_wanted, load_manifest_option, make_console, parse_duration_option, print_page, warn
from procctl.cli.planning import NothingToRerun, failed_items, load_predictions, plan_options, selected_manifest, warn_of_starvation
from procctl.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from procctl.cluster.executor import DaskExecutor
    from procctl.config.manifest import Manifest
    from procctl.config.plan import Plan
    from procctl.control.server import ControlServer
    from procctl.engine.outcome import RunResult
    from procctl.engine.store import StateDir
    from procctl.engine.supervisor import Supervisor
    from procctl.bus import Bus
    from procctl.ui.live import LiveView
    from procctl.ui.live_model import InstanceInfo
    from procctl.ui.sinks import EventStream
    from procctl.ui.writer import Writer


def run(
    names: list[str] | None = None,
    file: Path | None = None,
    parallel: str | None = None,
    schedule: str | None = None,
    plain_output: bool = False,
    tail: int | None = None,
    timeout: str | None = None,
    keep_going: bool = False,
    only: list[str] | None = None,
    exclude: list[str] | None = None,
    no_deps: bool = False,
    can_die: list[str] | None = None,
    any_can_die: bool = False,
    output: str = "interleaved",
    events_to: str | None = None,
    junit: str | None = None,
    json_summary: bool = False,
    no_watch: bool = False,
    executor: str | None = None,
    rerun_failed: bool = False,
) -> int:
    """Run the manifest's processes in the foreground until they end or
    Ctrl-C; the exit code of the run."""
    from procctl.config.executors import with_executor
    from procctl.config.plan import build_plan
    from procctl.control.address import socket_path
    from procctl.engine.store import StateDir

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
    # A run may last for hours in a directory others can write: what it
    # writes must not follow the directory's path once that is moved.
    state_dir.hold()
    try:
        only_items = failed_items(manifest, state_dir) if rerun_failed else None
    except NothingToRerun:
        return 0
    options = plan_options(parallel, schedule)
    plan = build_plan(manifest, only_items=only_items, **options)
    warn_of_starvation(plan)
    state_dir.prepare()
    # Held until this process ends: one supervisor per manifest.
    lock, detached = hold_supervisor_lock(state_dir, manifest.path)
    from procctl.engine.headstart import HeadStart

    # The guardian and the move into the run's cgroup begin on a thread of
    # their own, while the rest of the engine is imported (engine/headstart.py);
    # the run's executor takes them, or they are undone here.
    head_start = HeadStart()
    try:
        from procctl.control.server import ControlServer, serving
        from procctl.engine.loop import run_supervisor
        from procctl.engine.operations import Operations
        from procctl.engine.supervisor import Supervisor
        from procctl.bus import Bus
        from procctl.ui import plain
        from procctl.ui.writer import Writer

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
            predictions=load_predictions(plan, state_dir, warn),
            executors={"dask": cluster} if cluster is not None else None,
            control_socket=socket_path(state_dir),
            detached=detached,
            edited_plan=lambda: read_plan(manifest.path),
            watch=not no_watch,
            head_start=head_start,
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
        return result.exit_code
    finally:
        head_start.abandon()


def connect_cluster(manifest: Manifest) -> DaskExecutor | None:
    """The Dask cluster the manifest's `each` jobs go to, reached and
    checked before anything starts; None when every job runs here."""
    from procctl.config.executors import cluster_address, uses_dask

    if not uses_dask(manifest):
        return None
    from procctl.cluster.executor import DaskExecutor

    return DaskExecutor.connect(cluster_address(manifest), manifest)


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


def _open_event_stream(target: str | None, bus: Bus, on_stdout_closed: Callable[[], None] | None) -> EventStream | None:
    if target is None:
        return None
    from procctl.ui.sinks import EventStream

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
        warn(f"--junit {target}: {exc.strerror or exc}")


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


def _print_summary(result: RunResult, as_json: bool, out: TextIO) -> None:
    from procctl.jsonout import dumps
    from procctl.ui.summary import summary_json, summary_lines, summary_table

    try:
        if as_json:
            out.write(dumps(summary_json(result)))
            out.flush()
            return
        print_page([summary_table(result)], summary_lines(result), out)
    except OSError:
        # Nobody reads it any more (a closed pipe, a closed terminal: EPIPE,
        # EIO): the run is over and recorded; the exit code says how it went.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
