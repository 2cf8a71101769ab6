"""The supervisor of a run: the order of things, fail_fast, the ordered
shutdown and the result; who may start when is its `Admission`'s (the
dependency gate and the pool), and each instance's own life (spawn, probes,
timeouts, restarts, pause) is its `InstanceRunner`'s. What it holds is its
`Instances`, its big pools are `BigPools`, a reload and the watches are its
`Edits`, and its files are opened by `runfiles`.

Publishes events on the bus and returns a `RunResult`; never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from procctl import events
from procctl.bus import Bus
from procctl.config.plan import Job, Plan, job_like
from procctl.engine import childenv, runfiles
from procctl.engine.admission import Admission
from procctl.engine.bigpools import BigPools
from procctl.engine.child import Executor
from procctl.engine.edits import Edits
from procctl.engine.enforcer import Enforcer
from procctl.engine.headstart import HeadStart
from procctl.engine.heard import Heard
from procctl.engine.instances import Instances
from procctl.engine.ipc import Ipc
from procctl.engine.logfile import LogFile
from procctl.engine.metrics import Recorder
from procctl.engine.outcome import InstanceResult, Results, RunResult
from procctl.engine.predict import Prediction
from procctl.engine.localexec import LocalExecutor
from procctl.engine.runner import InstanceRunner
from procctl.engine.spawner import Spawner
from procctl.engine.store import StateDir
from procctl.engine.terminal import Terminals
from procctl.engine.tree import ProcessTree
from procctl.errors import INTERRUPTED_EXIT, TIMEOUT_EXIT, UsageError
from procctl.states import State


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        bus: Bus,
        state_dir: StateDir,
        *,
        fail_fast: bool | None = None,
        run_timeout_s: float | None = None,
        predictions: Mapping[str, Prediction] | None = None,
        executor: Executor | None = None,
        executors: Mapping[str, Executor] | None = None,
        control_socket: Path | None = None,
        detached: bool = False,
        edited_plan: Callable[[], Plan] | None = None,
        watch: bool = True,
        head_start: HeadStart | None = None,
    ) -> None:
        self.plan = plan
        self.bus = bus
        self.state_dir = state_dir
        self.fail_fast = plan.manifest.settings.fail_fast if fail_fast is None else fail_fast
        self.run_timeout_s = run_timeout_s
        heard = Heard(bus)
        self.spawner = Spawner()
        """Threads for the blocking steps of a start: the log's creation and the spawn, in one call."""
        self.executor: Executor = executor or LocalExecutor(
            concurrency=plan.concurrency(), spawner=self.spawner, on_notice=heard.executor_notice, head_start=head_start
        )
        """Starts the children of this machine (entered for the whole run)."""
        self.executors: dict[str, Executor] = {**(executors or {}), "local": self.executor}
        """Every executor of the run by name (`ProcessSpec.executor`): the
        local one, and a cluster's when some process sends its jobs there."""
        for spec in plan.manifest.processes.values():
            if spec.executor not in self.executors:
                raise UsageError(f'{spec.name}: executor = "{spec.executor}" but this run has no such executor')
        self.control_socket = control_socket
        """Where the control server listens, told to every child."""
        self.detached = detached
        """Started by `up -d`: no terminal, SIGHUP reloads, and it stays up
        until `down` even when nothing is left running."""
        self.instances = Instances()
        self.pools = BigPools(plan, self, state_dir.logs)
        """The big pools: made as they run."""
        self.feeders = self.pools.feeders
        for segment in plan.jobs.segments:
            if segment.spec.name in self.feeders:
                self.instances.by_process[segment.spec.name] = []  # its running instances
            else:
                for job in segment:
                    self.instances.join(self._runner(job))
        self._first_failure_result: InstanceResult | None = None
        self._stopping = False
        self._exit_override: int | None = None
        self._interrupted = False
        self._stop_requested: asyncio.Event | None = None
        self._leave_requested: asyncio.Event | None = None
        self.halted: str | None = None
        """Why a detached supervisor stopped everything and stays up (a
        failure under fail_fast, or exit_on_end), until `down`."""
        self.admission = Admission(plan, bus, predictions or {}, self.instances.by_process, self.feeders)
        """Who may start now: the dependency gate and the pool."""
        self._idle: asyncio.Event | None = None
        """Set when no runner's life is left going."""
        self._live_tasks = 0
        self.recorder = Recorder(plan, bus, state_dir, on_sample=self._on_sample)
        """Metrics of every run (Sample events, peaks) and the run history."""
        self._run_env: dict[str, str] = {}
        """What every child is told of this supervisor (`childenv`)."""
        self.enforcer = Enforcer(plan.manifest.settings.metrics_interval_s, heard.breach, heard.limit_notice)
        """Holds each run to its `memory` and `cpu_percent` limits."""
        self.ipc: Ipc[InstanceRunner] = Ipc(
            {name: region.size_bytes for name, region in plan.manifest.shared.items()},
            heard,
            bus.publish,
            interval_s=plan.manifest.settings.metrics_interval_s,
        )
        """The notification socket, the runs' watchdogs and the shared regions."""
        self.made_logs = runfiles.MadeLogs()
        """Which instance logs this run has made (the rest need no look at a start)."""
        self.terminals = Terminals()
        """The pseudo-terminals of `tty = true` processes."""
        self.edits = Edits(self, edited_plan, fail_fast_given=fail_fast, watch=watch)
        """Reload and the watches."""

    # ----------------------------------------------------------------- run

    async def run(self) -> RunResult:
        """Run the plan until nothing is left running or a stop completes.
        Everything it acquires is released however it ends."""
        try:
            return await self._run()
        finally:
            # What the executors' exits left going (the local one's move out
            # of the run's cgroup, which the kernel makes wait) had the rest
            # of the end to finish in: the history's last rows, old logs
            # pruned, the results.
            for executor in self.executors.values():
                executor.settle()

    async def _run(self) -> RunResult:
        began = time.monotonic()
        self._stop_requested = asyncio.Event()
        self._leave_requested = asyncio.Event()
        self._idle = asyncio.Event()
        with contextlib.ExitStack() as stack:
            self.state_dir.prepare()
            stack.enter_context(runfiles.pid_file(self.state_dir))
            stack.enter_context(runfiles.event_log(self.state_dir, self.bus, self.plan, self.recorder.run_id, self.instances.log_position, self.made_logs))
            self.recorder.start()
            stack.callback(self.recorder.close)
            stack.callback(self.enforcer.close)
            stack.callback(self.terminals.close)
            for executor in self.executors.values():
                stack.enter_context(executor)
            # Closed before the executors: no spawn is in flight at their last sweep.
            stack.enter_context(self.spawner)
            self.enforcer.open(self.executor.companions)
            self.ipc.open()
            # Closed after every child is gone (the kill below runs first).
            stack.callback(self.ipc.close)
            self._run_env = childenv.supervisor_env(
                control_socket=self.control_socket, manifest=self.plan.manifest.path, run_id=self.recorder.run_id, notify_socket=self.ipc.address
            )
            self.admission.open()
            stack.callback(self.admission.close)
            if self.run_timeout_s:
                stack.callback(asyncio.get_running_loop().call_later(self.run_timeout_s, self._on_run_timeout).cancel)
            # First out: whatever still runs (after an error) is killed before the rest closes.
            stack.callback(self._kill_all)
            if not self.instances and not self.feeders:
                self._idle.set()
            for runner in self.runners:
                self.launch(runner)
            for task in self.pools.feed():
                self._count(task)
            self.edits.open_watches()
            stack.callback(self.edits.close_watches)
            await self._supervise()
        return self._result(time.monotonic() - began)

    def open_log(self, job: Job, *, truncate: bool) -> LogFile:
        return runfiles.instance_log(self.state_dir, self.bus, self.instances.by_name[job.name], job, truncate=truncate, made=self.made_logs)

    def _runner(self, job: Job) -> InstanceRunner:
        return InstanceRunner(job, self.state_dir, self)

    @property
    def runners(self) -> list[InstanceRunner]:
        """Every instance it holds now: all of them, but of a big pool only
        those running (the rest wait in its feeder or are in its ledger)."""
        return list(self.instances)

    def drop(self, runner: InstanceRunner) -> None:
        """An instance of a big pool has ended (and is in its ledger)."""
        self.instances.drop(runner)
        self.enforcer.forget(runner)

    def add(self, job: Job, *, admitted: int | None = None, reason: str = "wanted again") -> InstanceRunner:
        """A new instance (scale up, a reload, a big pool's admitted item
        holding its slot) joins the run and starts its life. One this run
        had under the job's name (replica 1: or the lone `web`) — scaled
        down, stopped, or removed by a reload — is that instance again, under
        its own name: it runs again and its log goes on (`rejoin`)."""
        former = self.instances.named(job.name) if admitted is None else None
        if former is not None:
            if former.job.index != job.index:
                job = job_like(self.plan.manifest, job.spec, former.job)
            self.instances.rejoin(former)
            former.rejoin(job, reason)
            return former
        runner = self._runner(job)
        runner.admitted = admitted
        self.instances.join(runner)
        self.launch(runner)
        return runner

    def resolve(self, names: Iterable[str], *, everything: bool = False) -> list[InstanceRunner]:
        """The instances `names` mean (`Instances.resolve`)."""
        return self.instances.resolve(names, self.plan, self.feeders, everything=everything)

    def launch(self, runner: InstanceRunner) -> None:
        """Begin a runner's life (at the start, or a later `start`)."""
        self._count(runner.launch())

    def _count(self, task: asyncio.Task[None]) -> None:
        """A task of the run's life (a runner's, a feeder's): the run is not
        idle until it is done."""
        assert self._idle is not None
        self._live_tasks += 1
        self._idle.clear()
        task.add_done_callback(self._task_done)

    async def _supervise(self) -> None:
        """Wait until no runner has anything left to do — or, detached,
        until a stop request: a detached supervisor stays up with nothing
        running (a `start` or `scale` may come), as supervisord does, until
        `down`. A stop request turns into the ordered shutdown. Runners may
        be added meanwhile (start, scale): `launch` counts them in."""
        assert self._stop_requested is not None and self._idle is not None
        loop = asyncio.get_running_loop()
        stop_waiter = loop.create_task(self._stop_requested.wait())
        idle_waiter = loop.create_task(self._idle.wait())
        try:
            await asyncio.wait({stop_waiter} if self.detached else {stop_waiter, idle_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter.done() and not idle_waiter.done():
                await self._shutdown()
                await idle_waiter
            if self.halted is not None:
                self.bus.publish(events.Notice("procctl", "procctl", message=f"everything stopped after {self.halted}; the supervisor stays up until 'procctl down'"))
                assert self._leave_requested is not None
                await self._leave_requested.wait()
        finally:
            stop_waiter.cancel()
            idle_waiter.cancel()
        for runner in self.runners:
            task = runner.task
            if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _task_done(self, task: asyncio.Task[None]) -> None:
        assert self._idle is not None
        self._live_tasks -= 1
        if self._live_tasks == 0:
            self._idle.set()

    def _result(self, duration_s: float) -> RunResult:
        ledgers = self.pools.ledgers(self.plan.order, self.instances.by_process)
        held = [runner.result() for runner in self.instances]
        results = Results(held, ledgers, order=self.plan.order)
        failed = self._first_failure_result is not None or any(r.state.failure for r in held)
        code = INTERRUPTED_EXIT if self._interrupted else self._exit_override if self._exit_override is not None else int(failed)
        first = self._first_failure_result
        if first is not None and first.name in self.instances.by_name:
            first = self.instances.by_name[first.name].result()
        return RunResult(results, code, interrupted=self._interrupted, first_failure=first, duration_s=duration_s)

    # ------------------------------------------------------------ stopping

    def request_stop(self, reason: str = "stop requested", *, interrupted: bool = False, exit_code: int | None = None, halt: bool = False) -> None:
        """Graceful stop of everything, in reverse dependency order.
        `interrupted` (a signal) makes the exit 130 whenever it comes;
        `exit_code` counts only for the stop that comes first. `halt` (a
        failure under fail_fast, exit_on_end): a detached supervisor stops
        everything as asked but stays up, its status showing what failed,
        until `down` (as `up -d` promises), where a foreground run ends."""
        if interrupted:
            self._interrupted = True
        staying = halt and self.detached
        if self._stop_requested is not None and not self._stop_requested.is_set():
            if exit_code is not None and self._exit_override is None:
                self._exit_override = exit_code
            self.bus.publish(events.Notice("procctl", "procctl", message=f"stopping: {reason}"))
            self._stop_requested.set()
            if staying:
                self.halted = reason
        if not staying and self._leave_requested is not None:
            self._leave_requested.set()

    def force_stop(self) -> None:
        """SIGKILL every running tree now (a second Ctrl-C)."""
        self._stopping = True
        self.bus.publish(events.Notice("procctl", "procctl", message="forced stop: SIGKILL to everything", level="warning"))
        self._kill_all()

    def _kill_all(self) -> None:
        known = ProcessTree() if any(runner.child is not None for runner in self.runners) else None
        for runner in self.runners:
            runner.kill(known)

    def _on_run_timeout(self) -> None:
        self._exit_override = TIMEOUT_EXIT
        self.request_stop(f"run timeout of {self.run_timeout_s:g}s reached")

    async def _shutdown(self) -> None:
        self._stopping = True
        self.edits.close_watches()  # Nothing restarts for a change from now on.
        self.pools.stop_feeding()
        self.changed()
        for runner in self.runners:
            if runner.run is None:
                runner.stop("stopped")  # Waiting for something: nothing to stop gracefully.
        by_level: dict[int, list[InstanceRunner]] = {}
        for runner in self.runners:
            by_level.setdefault(self.plan.levels.get(runner.process, 0), []).append(runner)
        for level in sorted(by_level, reverse=True):
            group = by_level[level]
            known = ProcessTree()  # per level: the ones before may have forked meanwhile
            for runner in group:
                runner.stop("stopped", known)
            await asyncio.gather(*(runner.task for runner in group if runner.task), return_exceptions=True)

    @property
    def stopping(self) -> bool:
        """A stop is asked for or under way: nothing starts any more."""
        return self._stopping or (self._stop_requested is not None and self._stop_requested.is_set())

    # ------------------------------------------------ what runners ask of it

    def changed(self) -> None:
        self.admission.changed()

    async def dependencies(self, runner: InstanceRunner) -> str:
        return await self.admission.dependencies(runner)

    async def slot(self, runner: InstanceRunner) -> int:
        return await self.admission.slot(runner)

    def release(self, ticket: int) -> None:
        self.admission.release(ticket)

    def ended(self, runner: InstanceRunner) -> None:
        if runner.job.spec.exit_on_end and runner.state not in (State.STOPPED, State.SKIPPED) and not self._stopping and self._exit_override is None:
            # The first to end stops the rest and decides procctl's exit code, as under foreman.
            result = runner.result()
            self._exit_override = result.exit_code if result.exit_code is not None else 128 + result.signal if result.signal else 1
            self.request_stop(f"{runner.name} {result.status_text} (exit_on_end)", halt=True)
        failed = runner.state.failure
        if failed and self._first_failure_result is None:
            self._first_failure_result = runner.result()
        self.pools.fold(runner)
        if failed and self.fail_fast:
            self.request_stop(f"{runner.name} {runner.result().status_text} (fail_fast)", halt=True)

    def executor_for(self, job: Job) -> Executor:
        return self.executors[job.spec.executor]

    def env(self, job: Job) -> dict[str, str]:
        env = dict(self.executor_for(job).env)
        env.update(job.env)
        # The contract comes last: a manifest's [env] cannot misdirect it.
        env.update(self._run_env)
        env.update(self.ipc.env(job.spec))
        return env

    def stop_timeout_s(self, job: Job) -> float:
        spec = job.spec
        return spec.stop_timeout_s if spec.stop_timeout_s is not None else self.plan.manifest.settings.stop_timeout_s

    # --------------------------------------------------------------- limits

    def _on_sample(self, runner: InstanceRunner, sample: events.Sample) -> None:
        """Each sample of a running tree (every `metrics_interval`): the pool
        learns how much of its predicted peak the job already holds, and the
        enforcer checks the `memory` limit in force now."""
        run = runner.run
        if run is not None and not sample.final:
            self.admission.grown(run.ticket, sample.rss_bytes)
        if not runner.remote:
            # (A remote run's limits are held where it runs.)
            self.enforcer.sampled(runner, sample)
