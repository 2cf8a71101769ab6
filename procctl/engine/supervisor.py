"""The supervisor of a run: the order of things, fail_fast, the ordered
shutdown and the result; who may start when is its `Admission`'s (the
dependency gate and the pool), and each instance's own life (spawn, probes,
timeouts, restarts, pause) is its `InstanceRunner`'s.

Publishes events on the bus and returns a `RunResult`; never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from procctl import events
from procctl.config.plan import EAGER_JOBS, Job, Plan
from procctl.config.select import resolve
from procctl.engine import childenv
from procctl.engine.admission import Admission
from procctl.engine.child import Executor
from procctl.engine.enforcer import Enforcer
from procctl.engine import logindex
from procctl.engine.ipc import Ipc
from procctl.engine.logfile import LogFile
from procctl.engine.metrics import Recorder
from procctl.engine.feeder import Feeder
from procctl.engine.outcome import InstanceResult, Results, RunResult
from procctl.engine.predict import Prediction
from procctl.engine.reload import Current, ReloadPlan, plan_reload
from procctl.engine.reload import apply as apply_reload
from procctl.engine.process import LocalExecutor
from procctl.engine.runlog import RunLog
from procctl.engine.runner import InstanceRunner
from procctl.engine.spawner import Spawner
from procctl.engine.store import StateDir
from procctl.engine.terminal import Terminals
from procctl.engine.tree import ProcessTree
from procctl.engine.watcher import Watches
from procctl.errors import INTERRUPTED_EXIT, TIMEOUT_EXIT, ProcctlError, UsageError
from procctl.states import State


def _close_pair(fds: tuple[int, int]) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


class Supervisor:
    def __init__(
        self,
        plan: Plan,
        bus: events.Bus,
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
    ) -> None:
        self.plan = plan
        self.bus = bus
        self.state_dir = state_dir
        self.detached = detached
        """Started by `up -d`: SIGHUP reloads (`signals.hangup_action`)."""
        self._fail_fast_given = fail_fast
        self.fail_fast = plan.manifest.settings.fail_fast if fail_fast is None else fail_fast
        self._edited_plan = edited_plan
        """Reads the manifest again, as this run read it (the same processes
        picked, the same -j): what `reload` applies. None: no reload."""
        self.run_timeout_s = run_timeout_s
        self.spawner = Spawner()
        """Threads for the blocking steps of a start: the spawn, the log's creation."""
        self.executor: Executor = executor or LocalExecutor(concurrency=plan.concurrency(), spawner=self.spawner, on_notice=self._executor_notice)
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
        """Started by `up -d`: no terminal, and it stays up until `down` even
        when nothing is left running."""
        self._runners: dict[InstanceRunner, None] = {}
        """The instances it holds, in plan order (a dict: a big pool's come and go)."""
        self._by_process: dict[str, list[InstanceRunner]] = {}
        self._by_name: dict[str, InstanceRunner] = {}
        self.feeders: dict[str, Feeder] = {}
        """The big pools, by process: made as they run (`feeder`)."""
        for segment in plan.jobs.segments:
            if segment.spec.each is not None and len(segment) > EAGER_JOBS:
                self.feeders[segment.spec.name] = Feeder(segment, self, state_dir.logs)
                self._by_process[segment.spec.name] = []  # its running instances
            else:
                for job in segment:
                    self._join(self._runner(job))
        self._feeding: list[asyncio.Task[None]] = []
        self._first_failure_result: InstanceResult | None = None
        self._stopping = False
        self._exit_override: int | None = None
        self._interrupted = False
        self._stop_requested: asyncio.Event | None = None
        self.admission = Admission(plan, bus, predictions or {}, self._by_process, self.feeders)
        """Who may start now: the dependency gate and the pool."""
        self._idle: asyncio.Event | None = None
        """Set when no runner's life is left going."""
        self._live_tasks = 0
        self.recorder = Recorder(plan, bus, state_dir, on_sample=self._on_sample)
        """Metrics of every run (Sample events, peaks) and the run history."""
        self._run_env: dict[str, str] = {}
        """What every child is told of this supervisor (`childenv`)."""
        self.enforcer = Enforcer(plan.manifest.settings.metrics_interval_s, self._on_breach, self._on_limit_notice)
        """Holds each run to its `memory` and `cpu_percent` limits."""
        self.ipc: Ipc[InstanceRunner] = Ipc(
            {name: region.size_bytes for name, region in plan.manifest.shared.items()},
            _Heard(self),
            bus.publish,
            interval_s=plan.manifest.settings.metrics_interval_s,
        )
        """The notification socket, the runs' watchdogs and the shared regions."""
        self.terminals = Terminals()
        """The pseudo-terminals of `tty = true` processes."""
        self.watches: Watches | None = Watches(bus, self._live_instances, lambda: self._stopping) if watch else None
        """What restarts a process when its files change (None: --no-watch)."""

    # ----------------------------------------------------------------- run

    async def run(self) -> RunResult:
        """Run the plan until nothing is left running or a stop completes.
        Everything it acquires is released however it ends."""
        began = time.monotonic()
        self._stop_requested = asyncio.Event()
        self._idle = asyncio.Event()
        with contextlib.ExitStack() as stack:
            self.state_dir.prepare()
            stack.enter_context(self._pid_file())
            stack.enter_context(self._run_log())
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
            if not self._runners and not self.feeders:
                self._idle.set()
            for runner in self.runners:
                self.launch(runner)
            for feeder in self.feeders.values():
                self._feed(feeder)
            self._open_watches()
            stack.callback(self._close_watches)
            await self._supervise()
        return self._result(time.monotonic() - began)

    @contextlib.contextmanager
    def _pid_file(self) -> Iterator[None]:
        # Through the checked state directory: never written through a link.
        self.state_dir.write_pid(os.getpid())
        try:
            yield
        finally:
            self.state_dir.remove_pid()

    @contextlib.contextmanager
    def _run_log(self) -> Iterator[None]:
        """This run's logs begin (the last run's move to `logs/past/`), and
        procctl's own events are kept with them for the whole run."""
        settings = self.plan.manifest.settings
        try:
            self.state_dir.begin_run(self.recorder.run_id, {"pid": os.getpid(), "started": time.time(), "manifest": str(self.plan.manifest.path)})
            fd, _ = self.state_dir.open_log_pair(logindex.EVENTS, truncate=True, indexed=False)
        except OSError as exc:
            # A full or failing disk: the run goes on, its instances' logs
            # say so each for itself (`logfile`), without the event log.
            message = f"the run's event log is off ({exc.strerror or exc}): procctl logs will show the output without procctl's events"
            self.bus.publish(events.Notice("procctl", "procctl", message=message, level="warning"))
            yield
            return
        log = LogFile(fd, rotate=lambda: self.state_dir.rotate_log(logindex.EVENTS, settings.log_keep, indexed=False), max_bytes=settings.log_max_size)
        run_log = RunLog(log, self._log_position)
        self.bus.subscribe(run_log)
        try:
            yield
        finally:
            self.bus.unsubscribe(run_log)
            run_log.close()

    def _log_position(self, instance: str) -> int | None:
        runner = self._by_name.get(instance)
        return runner.log_position if runner is not None else None

    async def open_log(self, job: Job, *, truncate: bool) -> LogFile:
        runner = self._by_name[job.name]
        # Creating two files waits on the disk: a spawner thread does it.
        fd, index_fd = await self.spawner.call(lambda: self.state_dir.open_log_pair(job.log_name, truncate=truncate), _close_pair)

        def rotate() -> tuple[int, int]:
            return self.state_dir.rotate_log(job.log_name, runner.job.spec.log_keep)

        def rotate_failed(exc: OSError) -> None:
            message = f"its log {runner.log_path} could not rotate ({exc.strerror or exc}): it grows on, whole, until the run ends"
            self.bus.publish(events.Notice(runner.process, runner.name, message=message, level="warning"))

        return LogFile(fd, index_fd=index_fd, rotate=rotate, max_bytes=job.spec.log_max_size, on_rotate_error=rotate_failed)

    def _runner(self, job: Job) -> InstanceRunner:
        return InstanceRunner(job, self.state_dir.log_path(job.log_name), self)

    @property
    def runners(self) -> list[InstanceRunner]:
        """Every instance it holds now: all of them, but of a big pool only
        those running (the rest wait in its feeder or are in its ledger)."""
        return list(self._runners)

    def _join(self, runner: InstanceRunner) -> None:
        self._runners[runner] = None
        self._by_process.setdefault(runner.process, []).append(runner)
        self._by_name[runner.name] = runner

    def _fold(self, runner: InstanceRunner, feeder: Feeder) -> None:
        """A big pool's instance has ended: into its ledger, out of memory."""
        feeder.ledger.record(runner.job.index - 1, runner.result())
        self._runners.pop(runner, None)
        self._by_name.pop(runner.name, None)
        mine = self._by_process.get(runner.process)
        if mine is not None and runner in mine:
            mine.remove(runner)
        self.enforcer.forget(runner)

    def _feed(self, feeder: Feeder) -> None:
        assert self._idle is not None
        task = asyncio.get_running_loop().create_task(feeder.run())
        self._feeding.append(task)
        self._live_tasks += 1
        self._idle.clear()
        task.add_done_callback(self._task_done)

    @property
    def queued_items(self) -> int:
        """Instances of the big pools that wait to be made (not counted by the pool)."""
        return sum(feeder.queued for feeder in self.feeders.values())

    async def dependencies_of(self, job: Job) -> str:
        return await self.admission.dependencies_of(job)

    async def admit(self, job: Job) -> int:
        return await self.admission.admit(job)

    def start_admitted(self, job: Job, ticket: int) -> InstanceRunner:
        """A big pool's instance, made once the pool gave it `ticket`."""
        runner = self._runner(job)
        runner.admitted = ticket
        self._join(runner)
        self.launch(runner)
        return runner

    def add(self, job: Job) -> InstanceRunner:
        """A new instance (scale up) joins the run and starts its life."""
        runner = self._runner(job)
        self._join(runner)
        self.launch(runner)
        return runner

    # ----------------------------------------------------------------- watch

    def _open_watches(self) -> None:
        processes = self.plan.manifest.processes.values()
        if self.watches is not None:
            self.watches.apply(processes)
            return
        watched = [spec.name for spec in processes if spec.watch is not None]
        if watched:
            self.bus.publish(events.Notice("procctl", "procctl", message=f"watch is off for this run (--no-watch): {', '.join(watched)}"))

    def _close_watches(self) -> None:
        if self.watches is not None:
            self.watches.close()

    def _live_instances(self, process: str) -> list[InstanceRunner]:
        return [runner for runner in self._by_process.get(process, ()) if not runner.retired]

    # ---------------------------------------------------------------- reload

    def reload(self, *, dry_run: bool = False) -> ReloadPlan:
        """Read the edited manifest and apply it (`engine.reload`): what is
        new starts, what is gone stops, what changed restarts, the rest runs
        on. An invalid manifest raises (ManifestError, UsageError) before
        anything is touched. With `dry_run`, only the plan."""
        if self._edited_plan is None:
            raise UsageError("this supervisor has no manifest to read again")
        if self._stopping or (self._stop_requested is not None and self._stop_requested.is_set()):
            raise UsageError("the supervisor is stopping")
        edited = self._edited_plan()
        current = {
            process: [Current(runner.name, runner.job, runner.state.final) for runner in runners if not runner.retired]
            for process, runners in self._by_process.items()
        }
        plan = plan_reload(self.plan, current, edited)
        if not dry_run:
            apply_reload(self, plan)
        return plan

    def reload_on_hangup(self) -> None:
        """SIGHUP to a detached supervisor: a reload, as nginx and supervisord
        take it. No one waits for a reply, so its outcome goes to the run's
        output (`supervisor.log`) and events: what changed, or why the edited
        manifest was refused (then nothing changed)."""
        try:
            plan = self.reload()
        except ProcctlError as exc:
            self.bus.publish(events.Notice("procctl", "procctl", message=f"reload (SIGHUP) refused, nothing changed: {exc}", level="error"))
            return
        changed = [step.process for step in plan.steps if step.action != "unchanged"]
        done = f"{len(changed)} process{'es' if len(changed) != 1 else ''} changed ({', '.join(changed)})" if changed else "nothing changed"
        self.bus.publish(events.Notice("procctl", "procctl", message=f"reload (SIGHUP): {done}"))

    def instance(self, name: str) -> InstanceRunner:
        return self._by_name[name]

    def forget_process(self, process: str) -> None:
        self._by_process.pop(process, None)

    def replan(self, reload: ReloadPlan) -> None:
        plan = reload.plan
        self.plan = plan
        if self._fail_fast_given is None:
            self.fail_fast = plan.manifest.settings.fail_fast
        self.admission.replan(plan)
        self.ipc.add_regions({name: region.size_bytes for name, region in plan.manifest.shared.items()})
        if self.watches is not None:
            self.watches.apply(plan.manifest.processes.values())

    def resolve(self, names: Iterable[str], *, everything: bool = False) -> list[InstanceRunner]:
        """Instances by process name (all of its instances) or instance name
        (`web.2`, `thumb[7]`), each once, in one pass. An unknown name is a
        UsageError listing the known processes."""
        if everything:
            return list(self.runners)
        names = list(names)
        if not names:
            raise UsageError("name at least one process or instance (or use --all)")
        for name in names:
            job = self.plan.jobs.named(name) if name not in self._by_name else None
            if job is not None and job.process in self.feeders:
                raise UsageError(f"{name} is not running: an instance of a big pool ({job.process}) can be reached while it runs")
        return resolve(names, self._by_process, self._by_name)

    def launch(self, runner: InstanceRunner) -> None:
        """Begin a runner's life (at the start, or a later `start`)."""
        assert self._idle is not None
        task = runner.launch()
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
        parts: list[Sequence[InstanceResult]] = []
        for process in self.plan.order:
            feeder = self.feeders.get(process)
            if feeder is not None:
                for runner in list(self._by_process.get(process, ())):
                    self._fold(runner, feeder)  # (an error ended the run with it running)
                parts.append(feeder.ledger)
        held = [runner.result() for runner in self._runners]
        results = Results(held, parts, order=self.plan.order)
        if self._interrupted:
            code = INTERRUPTED_EXIT
        elif self._exit_override is not None:
            code = self._exit_override
        elif self._first_failure_result is not None or any(r.state.failure for r in held):
            code = 1
        else:
            code = 0
        first = self._first_failure_result
        if first is not None and first.name in self._by_name:
            first = self._by_name[first.name].result()
        return RunResult(results, code, interrupted=self._interrupted, first_failure=first, duration_s=duration_s)

    # ------------------------------------------------------------ stopping

    def request_stop(self, reason: str = "stop requested", *, interrupted: bool = False, exit_code: int | None = None) -> None:
        """Graceful stop of everything, in reverse dependency order.
        `interrupted` (a signal) makes the exit 130 whenever it comes;
        `exit_code` counts only for the stop that comes first."""
        if interrupted:
            self._interrupted = True
        if self._stop_requested is not None and not self._stop_requested.is_set():
            if exit_code is not None and self._exit_override is None:
                self._exit_override = exit_code
            self.bus.publish(events.Notice("procctl", "procctl", message=f"stopping: {reason}"))
            self._stop_requested.set()

    def force_stop(self) -> None:
        """SIGKILL every running tree now (a second Ctrl-C)."""
        self._stopping = True
        self.bus.publish(events.Notice("procctl", "procctl", message="forced stop: SIGKILL to everything", level="warning"))
        self._kill_all()

    def _executor_notice(self, message: str, level: str) -> None:
        self.bus.publish(events.Notice("procctl", "procctl", message=message, level=level))

    def _kill_all(self) -> None:
        known = ProcessTree() if any(runner.child is not None for runner in self.runners) else None
        for runner in self.runners:
            runner.kill(known)

    def _on_run_timeout(self) -> None:
        self._exit_override = TIMEOUT_EXIT
        self.request_stop(f"run timeout of {self.run_timeout_s:g}s reached")

    async def _shutdown(self) -> None:
        self._stopping = True
        self._close_watches()  # Nothing restarts for a change from now on.
        for task in self._feeding:
            task.cancel()  # The queues of the big pools: nothing more starts.
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
            self.request_stop(f"{runner.name} {result.status_text} (exit_on_end)")
        failed = runner.state.failure
        if failed and self._first_failure_result is None:
            self._first_failure_result = runner.result()
        feeder = self.feeders.get(runner.process)
        if feeder is not None:
            self._fold(runner, feeder)
        if failed and self.fail_fast:
            self.request_stop(f"{runner.name} {runner.result().status_text} (fail_fast)")

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

    def _on_breach(self, runner: InstanceRunner, limit: str, value: float, maximum: float, mechanism: str, reason: str) -> None:
        runner.breach(limit, value, maximum, mechanism, reason)

    def _on_limit_notice(self, runner: InstanceRunner, message: str) -> None:
        self.bus.publish(events.Notice(runner.process, runner.name, message=message, level="warning"))


class _Heard:
    """What the processes' notifications make the supervisor do."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._sup = supervisor

    def status_message(self, runner: InstanceRunner, text: str) -> None:
        self._sup.bus.publish(events.StatusMessage(runner.process, runner.name, text=text))

    def hung(self, runner: InstanceRunner, why: str) -> None:
        runner.hung(why)

    def notice(self, runner: InstanceRunner | None, message: str, level: str) -> None:
        process, name = (runner.process, runner.name) if runner is not None else ("procctl", "procctl")
        self._sup.bus.publish(events.Notice(process, name, message=message, level=level))
