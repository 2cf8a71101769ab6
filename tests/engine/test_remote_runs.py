"""Jobs whose executor runs them elsewhere (a Dask cluster), through the
engine's seam with fake children (tests/fakes.py): the runner routes each
process to its executor, takes the usage a child reports instead of sampling
a pid that is not of this machine, and judges the verdicts that come from
where the job ran (a limit held there, a lost worker). The cluster itself is
tests/cluster's."""

from __future__ import annotations

import signal
import textwrap
import time
from pathlib import Path

from fakes import FakeExecutor
from test_runner import World

from procctl import events
from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.engine.child import Breach, Exit
from procctl.engine.proctable import TreeUsage
from procctl.engine.operations import Operations
from procctl.engine.outcome import Cut
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor
from procctl.states import State

MANIFEST = """
[process.web]
cmd = "run"

[process.job]
cmd = ["{item}"]
each = ["run", "queued"]
executor = "dask"
restart = "on-failure"
max_restarts = 1
backoff = "0s"
limits = { memory = "1GiB" }
"""


class RemoteWorld(World):
    """A supervisor with a local fake executor and a remote one ("dask")."""

    def __init__(self, tmp_path: Path, manifest: str = MANIFEST) -> None:
        path = tmp_path / "procfile.toml"
        path.write_text(textwrap.dedent(manifest))
        self.bus = Bus()
        self.seen: list[events.Event] = []
        self.bus.subscribe(self.seen.append)
        self.executor = FakeExecutor()
        self.remote = FakeExecutor(remote=True)
        self.state_dir = StateDir.beside(path)
        self.sup = Supervisor(build_plan(load_manifest(path)), self.bus, self.state_dir, executor=self.executor, executors={"dask": self.remote})
        self.ops = Operations(self.sup)

    def child(self, name: str, run: int = -1):  # type: ignore[no-untyped-def]
        return (self.executor.of(name) + self.remote.of(name))[run]


def test_each_process_runs_on_its_own_executor(tmp_path: Path) -> None:
    """1. web runs here, job[1] and job[2] on the cluster's executor.
    2. Both executors are entered for the whole run.
    3. The remote ones get no local environment from the local executor."""
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.state("job[1]") is State.RUNNING and w.remote.of("job[2]") and w.state("web") is State.RUNNING, "all started")
        # (In either order: starts run on the spawner's threads.)
        assert sorted(c.request.env["PROCCTL_INSTANCE"] for c in w.remote.children) == ["job[1]", "job[2]"]
        assert [c.request.env["PROCCTL_INSTANCE"] for c in w.executor.children] == ["web"]
        assert w.remote.entered == 1 and w.executor.entered == 1
        assert w.remote.of("job[1]")[0].request.on_usage is not None and w.executor.of("web")[0].request.on_usage is None
        w.sup.request_stop()

    world.run(script)


def test_usage_reported_from_where_it_ran_makes_samples_and_totals(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.state("job[1]") is State.RUNNING, "job[1] running")
        child = w.child("job[1]")
        child.measure(TreeUsage(cpu_time_s=0.5, rss_bytes=300 << 20, read_bytes=None, write_bytes=None, threads=1, children=0))
        child.measure(TreeUsage(cpu_time_s=1.5, rss_bytes=200 << 20, read_bytes=None, write_bytes=None, threads=1, children=0))
        child.exit(0)
        await w.until(lambda: w.state("job[1]") is State.EXITED, "job[1] to end")
        w.sup.request_stop()

    result = world.run(script)
    samples = [e for e in world.seen if isinstance(e, events.Sample) and e.instance == "job[1]"]
    assert [s.rss_bytes for s in samples if not s.final] == [300 << 20, 200 << 20]
    job = next(r for r in result.instances if r.name == "job[1]")
    assert job.peak_rss_bytes == 300 << 20 and job.cpu_time_s == 1.5


def test_a_limit_held_where_it_ran_ends_it_over_the_limit(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.state("job[1]") is State.RUNNING, "job[1] running")
        breach = Breach("memory", float(2 << 30), float(1 << 30), "cgroup v2")
        w.child("job[1]").end(Exit(-int(signal.SIGTERM), None, time.time(), cut=Cut.LIMIT, why="memory 2GiB > 1GiB", breach=breach))
        await w.until(lambda: w.state("job[1]").final, "job[1] to end")
        w.sup.request_stop()

    result = world.run(script)
    job = next(r for r in result.instances if r.name == "job[1]")
    assert job.state is State.LIMIT_EXCEEDED and job.reason == "memory 2GiB > 1GiB"
    exceeded = [e for e in world.seen if isinstance(e, events.LimitExceeded)]
    assert [(e.instance, e.limit, e.mechanism) for e in exceeded] == [("job[1]", "memory", "cgroup v2")]


def test_a_lost_worker_fails_the_run_and_the_restart_policy_retries_it(tmp_path: Path) -> None:
    """1. job[1]'s worker is lost: its run fails, with the reason.
    2. restart = on-failure, max_restarts = 1: a second attempt starts,
       and the events say it is attempt 2."""
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.state("job[1]") is State.RUNNING, "job[1] running")
        w.child("job[1]").end(Exit(-int(signal.SIGKILL), None, time.time(), cut=Cut.LOST, why="its worker tcp://10.0.0.7:4000 was lost"))
        await w.until(lambda: len(w.remote.of("job[1]")) == 2 and w.state("job[1]") is State.RUNNING, "a second attempt")
        w.child("job[1]").exit(0)
        await w.until(lambda: w.state("job[1]") is State.EXITED, "job[1] to end")
        w.sup.request_stop()

    result = world.run(script)
    restarting = [e for e in world.seen if isinstance(e, events.Restarting) and e.instance == "job[1]"]
    assert [(e.attempt, e.reason) for e in restarting] == [(1, "its worker tcp://10.0.0.7:4000 was lost")]
    started = [e.attempt for e in world.seen if isinstance(e, events.Started) and e.instance == "job[1]"]
    assert started == [1, 2]
    assert next(r for r in result.instances if r.name == "job[1]").state is State.EXITED


def test_a_stop_gives_up_a_start_still_queued_on_the_cluster(tmp_path: Path) -> None:
    """job[2] waits on the cluster (it never started): a stop does not wait
    for it to start, and it ends skipped (nothing of it ran), not failed."""
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.remote.of("job[2]") and w.child("job[2]").queued, "job[2] queued")
        assert w.state("job[2]") is State.STARTING
        assert w.ops.kill(["job[2]"]) == {"stopping": ["job[2]"]}
        await w.until(lambda: w.state("job[2]").final, "job[2] to end")
        w.sup.request_stop()

    result = world.run(script)
    job = next(r for r in result.instances if r.name == "job[2]")
    assert job.state is State.SKIPPED and job.exit_code is None and job.pid is None
    assert world.states("job[2]") == [State.STARTING, State.SKIPPED]
    assert world.remote.of("job[2]")[0].gave_up


def test_ctrl_c_ends_a_queued_start_too(tmp_path: Path) -> None:
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.remote.of("job[2]") and w.child("job[2]").queued, "job[2] queued")
        # web and job[1] start on the spawner's threads: a stop before they run would skip them too.
        await w.until(lambda: all(State.RUNNING in w.states(name) for name in ("web", "job[1]")), "web and job[1] running")
        w.sup.request_stop("interrupted", interrupted=True)

    result = world.run(script)
    assert {r.name: r.state for r in result.instances} == {"web": State.STOPPED, "job[1]": State.STOPPED, "job[2]": State.SKIPPED}
    assert result.exit_code == 130


def test_a_process_for_an_executor_the_run_lacks_is_refused_in_one_line(tmp_path: Path) -> None:
    import pytest

    from procctl.errors import UsageError

    path = tmp_path / "procfile.toml"
    path.write_text(textwrap.dedent(MANIFEST))
    with pytest.raises(UsageError, match="job: executor = \"dask\" but this run has no such executor"):
        Supervisor(build_plan(load_manifest(path)), Bus(), StateDir.beside(path), executor=FakeExecutor())


def test_live_limit_changes_leave_a_remote_run_alone(tmp_path: Path) -> None:
    """`procctl limits` on a job on the cluster: its next runs get the new
    limit, its live tree (not of this machine) is not touched, and the reply
    says where the limits are held."""
    world = RemoteWorld(tmp_path)

    async def script(w: RemoteWorld) -> None:
        await w.until(lambda: w.state("job[1]") is State.RUNNING, "job[1] running")
        reply = w.ops.limits(["job[1]"], {"memory": "2GiB"})
        row = reply["instances"][0]
        assert row["usage"] is None and row["limits"]["memory"]["value"] == 2 << 30
        assert "worker" in row["limits"]["memory"]["mechanism"]
        assert w.runner("job[1]").limits.memory == 2 << 30
        w.sup.request_stop()

    world.run(script)
