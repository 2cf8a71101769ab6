"""An instance's life through the executor seam, with fake children
(tests/fakes.py): the edge cases of stop, pause, restart and start run in a
few turns of the loop, with no process and no sleep. The OS contract (groups,
signals, pipes) is the real-process tests' (test_child.py, tests/cli)."""

from __future__ import annotations

import asyncio
import signal
import socket
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from fakes import FakeChild, FakeExecutor

from procctl import events
from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.engine.operations import Operations
from procctl.engine.outcome import InstanceResult, RunResult
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor
from procctl.states import IllegalTransition, State


class World:
    """A supervisor over fake children, its control face and what it published."""

    def __init__(self, tmp_path: Path, manifest: str, executor: FakeExecutor | None = None) -> None:
        path = tmp_path / "procfile.toml"
        path.write_text(textwrap.dedent(manifest))
        self.bus = Bus()
        self.seen: list[events.Event] = []
        self.bus.subscribe(self.seen.append)
        self.executor = executor or FakeExecutor()
        self.state_dir = StateDir.beside(path)
        self.sup = Supervisor(build_plan(load_manifest(path)), self.bus, self.state_dir, executor=self.executor)
        self.ops = Operations(self.sup)

    def runner(self, name: str):  # type: ignore[no-untyped-def]
        return next(runner for runner in self.sup.runners if runner.name == name)

    def state(self, name: str) -> State:
        return self.runner(name).state

    def states(self, name: str) -> list[State]:
        return [e.state for e in self.seen if isinstance(e, events.StateChanged) and e.instance == name]

    def child(self, name: str, run: int = -1):  # type: ignore[no-untyped-def]
        return self.executor.of(name)[run]

    async def until(self, condition: Callable[[], object], what: str) -> None:
        # Fake children need no time, but a log is created on a spawner
        # thread: a few turns of the loop settle the rest.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if condition():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"never happened: {what}")

    def run(self, script: Callable[[World], Awaitable[None]]) -> RunResult:
        async def main() -> RunResult:
            supervising = asyncio.ensure_future(self.sup.run())
            try:
                await script(self)
            except BaseException:
                self.sup.force_stop()
                await supervising
                raise
            return await supervising

        return asyncio.run(main())


def test_a_stop_in_flight_is_not_undone_by_pause_and_resume(tmp_path: Path) -> None:
    """1. svc ignores its stop signal: `kill` leaves it stopping.
    2. pause and resume find nothing to do; it stays stopping.
    3. When it finally dies, it ended because we asked: stopped."""
    world = World(tmp_path, '[process.svc]\ncmd = "stubborn"\nstop_timeout = "1h"\n[process.keep]\ncmd = "run"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.RUNNING, "svc running")
        assert w.ops.kill(["svc"]) == {"stopping": ["svc"]}
        assert w.state("svc") is State.STOPPING
        assert w.ops.pause(["svc"])["paused"] == []
        assert w.ops.resume(["svc"])["resumed"] == []
        assert w.state("svc") is State.STOPPING and not w.child("svc").suspended
        w.child("svc").kill()
        await w.until(lambda: w.state("svc").final, "svc to end")
        w.sup.request_stop()

    result = world.run(script)
    assert world.states("svc") == [State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED]
    assert {r.name: r.state for r in result.instances} == {"svc": State.STOPPED, "keep": State.STOPPED}
    assert result.exit_code == 0


@pytest.mark.parametrize("verb", ["kill", "stop everything"])
def test_a_stop_while_the_spawn_waits_starts_nothing(tmp_path: Path, verb: str) -> None:
    """Its start is queued (for a spawner thread) when the stop comes: it is
    dropped before anything runs, and the instance ends skipped."""
    world = World(tmp_path, '[process.svc]\ncmd = "slow-start"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.executor.of("svc") and w.child("svc").starting, "svc waiting for its spawn")
        try:
            if verb == "kill":
                assert w.ops.kill(["svc"]) == {"stopping": ["svc"]}
            else:
                w.sup.request_stop()
            await w.until(lambda: w.state("svc").final, "svc to end")
        finally:
            w.child("svc").let_start()

    result = world.run(script)
    assert world.states("svc") == [State.STARTING, State.SKIPPED]
    assert world.child("svc").pid == 0 and result.instances[0].state is State.SKIPPED
    assert [e.instance for e in world.seen if isinstance(e, events.Skipped)] == ["svc"]
    assert not any(isinstance(e, events.Started) for e in world.seen)


def test_pause_holds_the_tree_and_resume_brings_it_back(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.svc]\ncmd = "run"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.RUNNING, "svc running")
        assert w.ops.pause(["svc"])["paused"] == ["svc"]
        assert w.child("svc").suspended and w.state("svc") is State.PAUSED
        assert w.ops.pause(["svc"])["paused"] == []  # already paused
        assert w.ops.resume(["svc"])["resumed"] == ["svc"]
        assert not w.child("svc").suspended and w.state("svc") is State.RUNNING
        w.child("svc").exit(0)

    result = world.run(script)
    assert world.states("svc") == [State.STARTING, State.RUNNING, State.PAUSED, State.RUNNING, State.EXITED]
    assert [type(e).__name__ for e in world.seen if isinstance(e, (events.Paused, events.Resumed))] == ["Paused", "Resumed"]
    assert result.exit_code == 0


def test_start_of_an_ended_instance_publishes_pending(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.job]\ncmd = "exit 0"\n[process.keep]\ncmd = "run"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("job") is State.EXITED, "job to end")
        w.sup.admission.hold(True)
        assert w.ops.start(["job", "keep"]) == {"starting": ["job"], "already_running": ["keep"]}
        assert w.state("job") is State.PENDING and w.states("job")[-1] is State.PENDING
        w.sup.admission.hold(False)
        await w.until(lambda: len(w.executor.of("job")) == 2 and w.state("job") is State.EXITED, "job's second run")
        w.sup.request_stop()

    world.run(script)
    assert world.states("job") == [State.STARTING, State.RUNNING, State.EXITED, State.PENDING, State.STARTING, State.RUNNING, State.EXITED]


def test_restart_cuts_a_backoff_short_and_starts_the_budget_afresh(tmp_path: Path) -> None:
    """1. job fails; its one restart waits out a backoff of an hour.
    2. `restart` cuts it short: the second run starts at once and fails.
    3. The budget started afresh with the restart: it backs off again
       (from the first step) rather than give up."""
    world = World(tmp_path, '[process.job]\ncmd = "exit 1"\nrestart = "always"\nbackoff = "1h"\nmax_restarts = 1\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("job") is State.BACKOFF, "a backoff of an hour")
        assert w.ops.restart(["job"]) == {"restarting": ["job"]}
        await w.until(lambda: len(w.executor.of("job")) == 2 and w.state("job") is State.BACKOFF, "the second run to fail and back off")
        w.ops.kill(["job"])

    result = world.run(script)
    assert [(e.attempt, e.delay_s) for e in world.seen if isinstance(e, events.Restarting)] == [(1, 30.0), (2, 30.0)]  # capped at 30 s
    assert not [e for e in world.seen if isinstance(e, events.GaveUp)]
    assert result.instances[0].restarts == 2 and result.instances[0].state is State.STOPPED


def test_restart_of_a_running_instance_stops_this_run_and_starts_the_next_at_once(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.svc]\ncmd = "run"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.RUNNING, "svc running")
        w.ops.restart(["svc"])
        await w.until(lambda: len(w.executor.of("svc")) == 2 and w.state("svc") is State.RUNNING, "the second run")
        w.child("svc").exit(0)

    result = world.run(script)
    assert world.child("svc", 0).signals == [signal.SIGTERM]
    assert [e.status for e in world.seen if isinstance(e, events.Exited)] == [State.STOPPED, State.EXITED]
    assert [(e.attempt, e.delay_s) for e in world.seen if isinstance(e, events.Restarting)] == [(1, 0.0)]
    assert world.states("svc") == [State.STARTING, State.RUNNING, State.STOPPING, State.STARTING, State.RUNNING, State.EXITED]
    assert result.instances[0].restarts == 1


def test_a_stop_while_waiting_for_a_dependency_skips_it_with_the_reason(tmp_path: Path) -> None:
    world = World(
        tmp_path,
        """
        [process.db]
        cmd = "run"
        ready = { log = "accepting", timeout = "1h" }
        [process.web]
        cmd = "run"
        depends_on = { db = "ready" }
        """,
    )

    async def script(w: World) -> None:
        await w.until(lambda: w.state("db") is State.RUNNING, "db running")
        assert w.state("web") is State.PENDING
        assert w.ops.kill(["web"]) == {"stopping": ["web"]}
        await w.until(lambda: w.state("web") is State.SKIPPED, "web skipped")
        w.child("db").output("accepting connections\n")
        await w.until(lambda: w.state("db") is State.READY, "db ready")
        w.sup.request_stop()

    result = world.run(script)
    web = next(r for r in result.instances if r.name == "web")
    assert web.reason == "killed on request" and world.executor.of("web") == []
    assert [e.why for e in world.seen if isinstance(e, events.Skipped)] == ["killed on request"]


def test_a_probe_passing_while_the_stop_is_in_flight_does_not_make_it_ready(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.svc]\ncmd = "stubborn"\nready = { log = "up", timeout = "1h" }\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.RUNNING, "svc running")
        w.ops.kill(["svc"])
        w.child("svc").output("up\n")
        for _ in range(20):
            await asyncio.sleep(0)
        assert w.state("svc") is State.STOPPING and not w.runner("svc").ready_once
        w.child("svc").kill()

    result = world.run(script)
    assert result.instances[0].state is State.STOPPED
    assert not any(isinstance(e, events.Ready) for e in world.seen)


_LOADER_AND_WORKER = """
    [process.loader]
    cmd = "{cmd}"
    ready = {{ {probe}, timeout = "1h" }}

    [process.worker]
    cmd = "exit 0"
    depends_on = {{ loader = "ready" }}
"""


def _log_line(text: str) -> Callable[[FakeChild], None]:
    return lambda loader: loader.output(text)


def _notification(loader: FakeChild) -> None:
    # The datagram waits in the socket: it is read after the exit is seen.
    address = loader.request.env["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", "\0" + address.removeprefix("@"))


def _say_and_exit(tmp_path: Path, cmd: str, probe: str, say: Callable[[FakeChild], None]) -> tuple[World, dict[str, InstanceResult]]:
    """The loader says something and exits in the same turn of the loop, so
    that its probe's task has no turn in between."""
    world = World(tmp_path, _LOADER_AND_WORKER.format(cmd=cmd, probe=probe))

    async def script(w: World) -> None:
        await w.until(lambda: w.state("loader") is State.RUNNING, "loader running")
        say(w.child("loader"))
        w.child("loader").exit(0)

    return world, {i.name: i for i in world.run(script).instances}


@pytest.mark.parametrize(
    ("cmd", "probe", "say"),
    [("loads", 'log = "loaded"', _log_line("loaded\n")), ("this-process", "notify = true", _notification)],
    ids=["log line", "READY=1"],
)
def test_readiness_said_just_before_the_exit_still_counts(tmp_path: Path, cmd: str, probe: str, say: Callable[[FakeChild], None]) -> None:
    world, ended = _say_and_exit(tmp_path, cmd, probe, say)
    assert ended["loader"].state is State.EXITED
    assert world.states("loader")[-2:] == [State.READY, State.EXITED]
    assert [e.instance for e in world.seen if isinstance(e, events.Ready)] == ["loader"]
    # What waited for it to be ready ran.
    assert ended["worker"].state is State.EXITED and ended["worker"].exit_code == 0


def test_a_run_that_never_said_ready_is_not_made_ready_by_its_exit(tmp_path: Path) -> None:
    world, ended = _say_and_exit(tmp_path, "loads", 'log = "loaded"', _log_line("still loading\n"))
    assert State.READY not in world.states("loader") and not any(isinstance(e, events.Ready) for e in world.seen)
    assert ended["worker"].state is State.SKIPPED and world.executor.of("worker") == []


def test_a_command_that_cannot_start_fails_and_backs_off_by_its_policy(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.ghost]\ncmd = "missing"\nrestart = "on-failure"\nbackoff = "0s"\nmax_restarts = 1\n')
    result = world.run(lambda w: asyncio.sleep(0))
    ghost = result.instances[0]
    assert (ghost.state, ghost.exit_code, ghost.restarts) == (State.FAILED, 127, 1)
    assert ghost.reason.startswith("gave up after 1 restart in ") and ghost.reason.endswith(": command not found: missing")
    assert world.states("ghost") == [State.STARTING, State.BACKOFF, State.STARTING, State.FAILED]
    assert result.exit_code == 1


def test_fail_fast_stops_the_rest_and_names_the_first_failure(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.bad]\ncmd = "run"\n[process.svc]\ncmd = "run"\n')

    async def script(w: World) -> None:
        # Both run first (a start still to come when the run stops is skipped, not stopped).
        await w.until(lambda: w.state("bad") is State.RUNNING and w.state("svc") is State.RUNNING, "both running")
        w.child("bad").exit(3)

    result = world.run(script)
    assert {r.name: r.status_text for r in result.instances} == {"bad": "failed 3", "svc": "stopped"}
    assert result.first_failure is not None and result.first_failure.name == "bad"
    assert result.exit_code == 1


def test_a_second_ctrl_c_kills_a_stubborn_child_at_once(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.svc]\ncmd = "stubborn"\nstop_timeout = "1h"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.RUNNING, "svc running")
        w.sup.request_stop("interrupted", interrupted=True)
        await w.until(lambda: w.state("svc") is State.STOPPING, "the graceful stop")
        w.sup.force_stop()

    result = world.run(script)
    assert result.instances[0].state is State.STOPPED and result.instances[0].signal == signal.SIGKILL
    assert result.exit_code == 130


def test_the_one_writer_refuses_what_the_table_forbids(tmp_path: Path) -> None:
    world = World(tmp_path, '[process.svc]\ncmd = "run"\n')
    runner = world.runner("svc")
    with pytest.raises(IllegalTransition, match="svc: pending may not become running"):
        runner.transition(State.RUNNING)
    assert runner.state is State.PENDING and world.seen == []


def test_a_failure_while_setting_up_releases_what_was_acquired(tmp_path: Path) -> None:
    class Broken(FakeExecutor):
        def __enter__(self) -> FakeExecutor:
            raise OSError("the guardian could not start")

    world = World(tmp_path, '[process.svc]\ncmd = "run"\n', Broken())
    with pytest.raises(OSError, match="guardian"):
        world.run(lambda w: asyncio.sleep(0))
    assert world.state_dir.root.is_dir() and not world.state_dir.pid_file.exists()
    assert world.sup.recorder.sampler.running is False
    assert world.executor.children == []


def _fail(child: FakeChild, ran_s: float = 0.0) -> None:
    """End a fake run with code 1 after it ran `ran_s` (as its clock says)."""
    child.started_at -= ran_s
    child.exit(1)


def test_a_run_of_min_uptime_starts_the_restart_budget_afresh(tmp_path: Path) -> None:
    """max_restarts = 1, min_uptime = 5s:
    1. The first run fails at once: restart 1 of 1.
    2. The second runs a minute, then fails: a good run, so the budget starts
       afresh and it is restarted again.
    3. The third fails at once: the budget of one restart is spent; it gives
       up, saying so with how many restarts, over how long, and why."""
    world = World(tmp_path, '[process.svc]\ncmd = "run"\nrestart = "on-failure"\nbackoff = "0s"\nmax_restarts = 1\nmin_uptime = "5s"\n')

    async def script(w: World) -> None:
        for run, ran_s in enumerate((0.0, 60.0, 0.0), start=1):
            await w.until(lambda: len(w.executor.of("svc")) == run and w.state("svc") is State.RUNNING, f"run {run}")
            _fail(w.child("svc"), ran_s)
        await w.until(lambda: w.state("svc").final, "svc to end")

    result = world.run(script)
    assert len(world.executor.of("svc")) == 3
    (gave_up,) = [e for e in world.seen if isinstance(e, events.GaveUp)]
    assert (gave_up.restarts, gave_up.why) == (1, "failed 1")
    svc = result.instances[0]
    assert svc.state is State.FAILED and svc.restarts == 2
    assert svc.reason.startswith("gave up after 1 restart in ") and svc.reason.endswith(": failed 1")
    assert world.states("svc")[-1] is State.FAILED


def test_start_gives_an_instance_that_gave_up_a_fresh_budget(tmp_path: Path) -> None:
    world = World(tmp_path, '[settings]\nfail_fast = false\n[process.svc]\ncmd = "exit 1"\nrestart = "on-failure"\nbackoff = "0s"\nmax_restarts = 2\n[process.keep]\ncmd = "run"\n')

    async def script(w: World) -> None:
        await w.until(lambda: w.state("svc") is State.FAILED, "svc to give up")
        assert len(w.executor.of("svc")) == 3
        assert w.ops.start(["svc"])["starting"] == ["svc"]
        await w.until(lambda: len(w.executor.of("svc")) == 6 and w.state("svc") is State.FAILED, "svc to give up again")
        w.sup.request_stop()

    world.run(script)
    assert [e.restarts for e in world.seen if isinstance(e, events.GaveUp)] == [2, 2]
