"""`procctl up -d` and `procctl down`: the supervisor in the background.

`up -d` starts `procctl run` in its own session with its output in
.procctl/supervisor.log and returns once every process has started (or, with
--wait, is ready). `down` asks it to stop and returns when it is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated, Any, Optional

import typer

from procctl.cli.app import FileOption, app, parse_duration_option
from procctl.cli.control import call
from procctl.cli.run import (
    AnyCanDieOption,
    CanDieOption,
    ExceptOption,
    KeepGoingOption,
    NamesArg,
    NoDepsOption,
    NoWatchOption,
    OnlyOption,
    ParallelOption,
    ScheduleOption,
    TimeoutOption,
)
from procctl.cli.planning import plan_options, selected_manifest, warn_of_starvation
from procctl.errors import AlreadyRunning, AnotherManifestRuns, NoAnswer, NoSupervisor, NotRunning, ProcctlError, UsageError
from procctl.states import State, status_text

_STARTED = {State.RUNNING, State.READY, State.PAUSED, State.EXITED, State.STOPPING}
_READY = {State.READY, State.EXITED}


def _settled(
    status: dict[str, Any], wait_ready: bool, has_probe: dict[str, bool], pooled: dict[str, bool]
) -> tuple[list[str], list[str], list[str]]:
    """(the instances that failed, those `up` still waits for, the jobs
    queued for the pool), each as `name (state: why)`. A service is waited
    for until it is ready (with --wait and a probe) or has started; a job
    queued while the pool has no room is not: it starts when a slot frees,
    maybe only once others have ended."""
    failed, unsettled, queued = [], [], []
    pool = status.get("pool") or {}
    starting = any(row["state"] == State.STARTING for row in status["instances"])
    # No slot for a job now: every one is taken (or the adaptive pool holds
    # back for CPU or memory), and none is being filled.
    no_room = not starting and (pool.get("running", 0) >= pool.get("size", 1) or bool(pool.get("auto")))
    for row in status["instances"]:
        state = State(row["state"])
        why = f": {row['reason']}" if row.get("reason") else ""
        probed = wait_ready and has_probe.get(row["process"], False)
        if state.failure or state is State.SKIPPED:
            failed.append(f"{row['name']} ({status_text(state, row['exit_code'], row['signal'])}{why})")
        elif state is State.PENDING and pooled.get(row["process"], False) and no_room:
            queued.append(row["name"])
        elif state not in (_READY if probed else _STARTED):
            not_ready = ", not ready" if probed and state in _STARTED else ""
            unsettled.append(f"{row['name']} ({status_text(state, row['exit_code'], row['signal'])}{not_ready}{why})")
    return failed, unsettled, queued


STATUS_WAIT_MIN_S = 0.5
"""The shortest wait for an answer to `up -d`'s status request, even at its deadline."""


@app.command()
def up(
    names: NamesArg = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Run the supervisor in the background; when one already runs, say so and exit 0.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Return once every process with a probe is ready, not just started.")] = False,
    wait_timeout: Annotated[str, typer.Option("--wait-timeout", metavar="DURATION", help="Give up waiting after this long (exit 1).")] = "60s",
    parallel: ParallelOption = None,
    schedule: ScheduleOption = None,
    timeout: TimeoutOption = None,
    keep_going: KeepGoingOption = False,
    only: OnlyOption = None,
    exclude: ExceptOption = None,
    no_deps: NoDepsOption = False,
    can_die: CanDieOption = None,
    any_can_die: AnyCanDieOption = False,
    events_to: Annotated[
        Optional[str], typer.Option("--events", metavar="FILE", help="Write every event as JSON lines to FILE.", show_default=False)
    ] = None,
    junit: Annotated[Optional[str], typer.Option("--junit", metavar="FILE", help="Write a JUnit XML report to FILE when the run ends.", show_default=False)] = None,
    no_watch: NoWatchOption = False,
    file: FileOption = None,
) -> None:
    """Start the supervisor; with -d in the background, returning once processes are up. Takes run's options."""
    from procctl.config.locate import find_manifest
    from procctl.config.loader import load_manifest
    from procctl.config.plan import build_plan
    from procctl.engine.logread import tail_of
    from procctl.engine.store import LOCK_FD_VAR, StateDir

    manifest_path = find_manifest(file)
    manifest = load_manifest(manifest_path)
    # Checked here, where the user reads the error, not in the supervisor's log.
    plan = build_plan(selected_manifest(manifest, names, only, exclude, no_deps, can_die, any_can_die), **plan_options(parallel, schedule))
    parse_duration_option("--timeout", timeout)
    args = [sys.executable, "-m", "procctl", "run", "--plain", "-f", str(manifest_path)]
    given = {"-j": parallel, "--schedule": schedule, "--timeout": timeout, "--events": _absolute(events_to), "--junit": _absolute(junit)}
    args += [part for flag, value in given.items() if value is not None for part in (flag, value)]
    repeated = {"--only": only, "--except": exclude, "--can-die": can_die}
    args += [part for flag, values in repeated.items() for value in values or [] for part in (flag, value)]
    switches = {"--keep-going": keep_going, "--no-deps": no_deps, "--any-can-die": any_can_die, "--no-watch": no_watch}
    args += [flag for flag, on in switches.items() if on]
    args += ["--", *(names or [])]
    if not detach:
        os.execv(sys.executable, args)
    if "-" in (events_to, junit):
        raise UsageError("up -d has no terminal to write to: give --events and --junit a file")
    warn_of_starvation(plan)
    limit = parse_duration_option("--wait-timeout", wait_timeout) or 60.0
    state = StateDir.beside(manifest_path)
    state.prepare()
    # The lock decides, not the socket: taken here and handed to the
    # supervisor, so that a second `up -d` is refused before it touches the log.
    try:
        lock = state.lock_supervisor(manifest_path)
    except AlreadyRunning as running:
        if state.other_manifest(manifest_path) is not None:
            raise
        # As `docker compose up -d` does for what runs: nothing to do, and no error.
        typer.echo(f"already up: {running}")
        return
    log = state.supervisor_log
    log_fd = state.open("supervisor.log", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    env = dict(os.environ, **{LOCK_FD_VAR: str(lock)})
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=manifest_path.parent, env=env, pass_fds=(lock,),
    )  # fmt: skip
    state.record_supervisor(lock, proc.pid)
    has_probe = {name: spec.ready is not None for name, spec in manifest.processes.items()}
    pooled = {name: spec.pool for name, spec in manifest.processes.items()}
    deadline = time.monotonic() + limit
    unsettled: list[str] = []
    answered = False
    while True:
        code = proc.poll()
        if code == 0:
            typer.echo(f"everything ran and ended well (see {state.logs})")
            return
        if code is not None:
            tail = tail_of(log_fd, 5)[0].decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise ProcctlError(f"the supervisor exited with code {code}: {tail[0]} (see {log})")
        try:
            # A supervisor busy starting thousands may answer slowly: it has
            # until the wait's own deadline, not a fixed few seconds.
            status = call(manifest_path, "status", timeout_s=max(deadline - time.monotonic(), STATUS_WAIT_MIN_S))
        except (NoSupervisor, NoAnswer):
            status = None
        if status is not None:
            answered = True
            failed, unsettled, queued = _settled(status, wait, has_probe, pooled)
            if failed:
                raise ProcctlError(f"failed to come up: {', '.join(failed)} (see {state.logs}; the supervisor runs on: 'procctl down' stops it)")
            if not unsettled:
                break
        if time.monotonic() > deadline:
            which, aside = f": {', '.join(unsettled)}", ""
            if status is None:
                which, aside = "", "the supervisor stopped answering; " if answered else "the supervisor never answered; "
            raise ProcctlError(f"not {'ready' if wait else 'started'} after {limit:g}s{which} ({aside}see {log}; the supervisor runs on: 'procctl down' stops it)")
        time.sleep(0.05)
    up_count = len(status["instances"]) - len(queued)
    typer.echo(f"supervisor {proc.pid} is up: {up_count} instances {'ready' if wait else 'started'}; 'procctl down' stops it")
    if queued:
        size = status["pool"]["size"]
        typer.echo(
            f"queued for the pool of {size}: {', '.join(queued)} (jobs: they start when a slot frees; raise -j or max_parallel to run more at once)"
        )


def _absolute(path: str | None) -> str | None:
    """A report path as the user meant it: the supervisor runs in the manifest's directory."""
    return path if path in (None, "-") else os.path.abspath(path)  # type: ignore[type-var]


@app.command()
def down(
    file: FileOption = None,
    timeout: Annotated[str, typer.Option("--timeout", metavar="DURATION", help="Longest wait for everything to stop.")] = "60s",
) -> None:
    """Stop the running supervisor gracefully; return when everything is gone. Nothing running: say so, exit 0."""
    import signal

    from procctl.config.locate import find_manifest
    from procctl.control.client import Unreachable

    limit = parse_duration_option("--timeout", timeout) or 60.0
    how = ""
    try:
        pid = call(file, "ping")["pid"]
    except Unreachable as exc:
        # Its socket is gone for good; the lock proves which process it is.
        # SIGTERM is the same graceful stop `shutdown` asks for.
        pid = exc.pid
        os.kill(pid, signal.SIGTERM)
        how = " (reached by its pid: its control socket was gone)"
    except AnotherManifestRuns as other:
        typer.echo(f"already down: {other}")
        return
    except NotRunning:
        # As `docker compose down` does when nothing runs: what it asks for holds already.
        typer.echo(f"already down: no supervisor runs for {find_manifest(file)}")
        return
    else:
        try:
            call(file, "shutdown")
        except NoSupervisor:
            pass  # it ended between the two requests: waited for below
    deadline = time.monotonic() + limit
    while _alive(pid):
        if time.monotonic() > deadline:
            raise ProcctlError(f"the supervisor (pid {pid}) is still stopping after {limit:g}s")
        time.sleep(0.05)
    typer.echo(f"supervisor {pid} stopped{how}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


