"""One instance's life: spawn, probe, timeout, stop, restart, pause and
resume, one run after another.

An `InstanceRunner` lives as long as its supervisor knows the instance and
holds what outlives a run: its state, its totals, the limits in force,
whether it was ever ready, and what it is wanted to do next (`Want`). A
`Run` is made at each spawn and dropped when that run has ended; what
belongs to one run (its child, its timeout, its probe, why and how it is
being stopped, whether it is paused) lives there, so nothing is reset by
hand between runs.

The runner is the one writer of its state: `transition` refuses whatever
`states.FOLLOWS` does not allow and publishes the change. What it needs of
its supervisor (the dependency gate, a pool slot, the executor, metrics and
limits) comes through `Host`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from procctl import events
from procctl.engine import limits
from procctl.engine.child import SpawnRequest
from procctl.engine.enforcer import close_fds
from procctl.engine.outcome import Cut, Ending, InstanceResult, Totals, judge
from procctl.engine.probes import LogProbe, PortHeld, held_before_start, poll_probe, substitute_port, watch_liveness
from procctl.engine.run import Deadline, Run, Want
from procctl.engine.logfile import LogFile
from procctl.errors import SpawnError, StateDirError
from procctl.states import IllegalTransition, State, may_follow, status_text
from procctl.units import format_duration

if TYPE_CHECKING:
    from procctl.config.manifest import Limits
    from procctl.config.plan import Job
    from procctl.engine.child import ChildProcess, Executor
    from procctl.engine.enforcer import Enforcer
    from procctl.engine.ipc import Ipc
    from procctl.engine.metrics import Recorder
    from procctl.engine.terminal import Terminals
    from procctl.engine.tree import ProcessTree

MAX_BACKOFF_S = 30.0


@dataclasses.dataclass
class RestartBudget:
    """The restarts in a row since the instance last stayed up `min_uptime`
    (or was restarted or started by hand): what `max_restarts` bounds and
    what doubles the backoff, as pm2 and supervisord count them."""

    used: int = 0
    since: float | None = None
    """Epoch seconds of the end of the run that took the first restart."""

    def reset(self) -> None:
        self.used, self.since = 0, None


class Host(Protocol):
    """What a runner needs of its supervisor."""

    bus: events.Bus
    recorder: Recorder
    enforcer: Enforcer
    ipc: Ipc[InstanceRunner]
    """Its notifications, its watchdog, its shared regions."""
    terminals: Terminals
    """Where a `tty = true` run gets its pseudo-terminal."""

    @property
    def stopping(self) -> bool:
        """The whole run is stopping: nothing starts again."""
        ...

    def launch(self, runner: InstanceRunner) -> None:
        """Begin the runner's life (it calls this itself for `start`)."""
        ...

    async def dependencies(self, runner: InstanceRunner) -> str:
        """Wait until its dependencies hold: '' then, else why they never will."""
        ...

    async def slot(self, runner: InstanceRunner) -> int:
        """Wait for a pool slot; its ticket."""
        ...

    def release(self, ticket: int) -> None: ...

    def executor_for(self, job: Job) -> Executor:
        """Where runs of `job` happen (its process's `executor`)."""
        ...

    def env(self, job: Job) -> dict[str, str]:
        """The whole environment of a run of `job`."""
        ...

    def stop_timeout_s(self, job: Job) -> float: ...

    async def open_log(self, job: Job, *, truncate: bool) -> LogFile:
        """The writer of the job's log (and its time index), rotating as its
        process says. Raises OSError or StateDirError."""
        ...

    def changed(self) -> None:
        """Some instance's state changed (the dependency gate looks again)."""
        ...

    def ended(self, runner: InstanceRunner) -> None:
        """The runner reached a final state."""
        ...


class InstanceRunner:
    """One instance, from its first queueing to its last run."""

    def __init__(self, job: Job, log_path: Path, host: Host) -> None:
        self.job = job
        self.log_path = log_path
        self._host = host
        self.state = State.PENDING
        self.totals = Totals()
        self.executor = host.executor_for(job)
        """Starts its runs: here, or on a cluster."""
        self.remote = self.executor.remote
        """Its runs happen on another machine's process: its pid means
        nothing here, and its limits are held where it runs."""
        self.limits: Limits = job.spec.limits
        """In force for this instance; `procctl limits` changes it for the live
        tree and for later runs."""
        self.run: Run | None = None
        """The current run, while there is one."""
        self.started_once = False
        self.ready_once = False
        self.want = Want.UP
        self.budget = RestartBudget()
        self._down_reason = ""
        """Why it was asked to stop (the first reason of a stop request)."""
        self._again_reason = ""
        """Why it is to run again at once (Want.AGAIN), as its `restarting` event says."""
        self._next_job: Job | None = None
        """A reloaded definition, taken when the current run has ended."""
        self._regate = True
        """Its dependencies must hold before its next run (at first, and
        after a reload restarted it)."""
        self.retired = False
        """Stopped for good by a scale down or a reload that removed it."""
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        """Set to cut a backoff short."""
        self.admitted: int | None = None
        """A pool slot it was made with (a big pool's instance): its first run's."""
        self._log: LogFile | None = None
        """Its log's writer, from its first start to the end of its life."""

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def process(self) -> str:
        return self.job.process

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    @property
    def child(self) -> ChildProcess | None:
        return self.run.child if self.run is not None else None

    @property
    def _spawned(self) -> bool:
        """Its current run's child has started (a pid): only then is there
        anything to stop gracefully."""
        return self.run is not None and self.run.child.pid != 0

    @property
    def paused(self) -> bool:
        return self.run is not None and self.run.paused

    # ------------------------------------------------------------ state

    def may(self, state: State) -> bool:
        return may_follow(self.state, state)

    def transition(self, state: State, reason: str = "") -> None:
        """The only change of an instance's state: refused unless the table
        allows it; published as a `state` event."""
        if not may_follow(self.state, state):
            raise IllegalTransition(self.name, self.state, state)
        self.state = state
        if reason:
            self.totals.reason = reason
        self._host.bus.publish(events.StateChanged(self.process, self.name, state=state, reason=reason))
        self._host.changed()

    def result(self) -> InstanceResult:
        """Its totals and its state now, together."""
        if self._log is not None:
            self.totals.log_lost_bytes = self._log.lost_bytes
        return InstanceResult(**vars(self.totals), name=self.name, process=self.process, state=self.state, log_path=self.log_path)

    # ------------------------------------------------------------- verbs

    def stop(self, reason: str, known: ProcessTree | None = None) -> bool:
        """Stop it gracefully and keep it down. False when it had ended."""
        if self.state.final:
            return False
        if self.want is not Want.DOWN:
            self.want, self._down_reason = Want.DOWN, reason
        if self._spawned:
            self._cut(Cut.REQUEST, reason, self._down_reason, known)
        elif self._task is not None:
            # Nothing runs: it waits for its dependencies, a slot, a backoff
            # or its spawn (a start not begun is dropped, one begun is undone).
            self._task.cancel()
        return True

    def kill(self, known: ProcessTree | None = None) -> None:
        """SIGKILL its tree now and keep it down (a second Ctrl-C; the end of a run)."""
        if self.state.final:
            return
        if self.want is not Want.DOWN:
            self.want, self._down_reason = Want.DOWN, "stopped"
        run = self.run
        if run is None or not self._spawned:
            if self._task is not None:
                self._task.cancel()
            return
        if not run.child.pid:
            self._give_up_start(run, self._down_reason)
        elif run.child.running:
            self._mark(run, Cut.REQUEST, self._down_reason, self._down_reason, known)
            run.child.kill(known)

    def restart(self, reason: str = "restart requested") -> None:
        """End the current run and start the next at once; start an ended one.
        Asked for (by hand, a reload, a watched file), it is not a failure:
        it never counts against `max_restarts`, and the count starts afresh."""
        if self.state.final:
            self.start()
            return
        # Asked for (by hand, a reload, a watched file): the budget starts afresh.
        self.budget.reset()
        run = self.run
        if run is not None and run.child.running:
            self.want, self._again_reason = Want.AGAIN, reason
            self._cut(Cut.RESTART, reason, reason)
        elif run is not None and self.state is State.STARTING:
            # Its child is being started: the cut follows once it runs.
            self.want, self._again_reason = Want.AGAIN, reason
        elif self.state is State.BACKOFF and self._wake is not None:
            self._wake.set()

    def replace(self, job: Job, *, restart: bool, reason: str) -> None:
        """A reload's definition of this instance. With `restart`, the current
        run ends gracefully (as its old definition says) and the next runs
        the new one once its dependencies hold again; an ended instance
        starts again. Without, the new definition (its dependencies, say)
        holds from now on. Not counted against `max_restarts`."""
        if not restart:
            self._adopt(job)
            return
        # Dependents that start from now on wait for it to be ready again.
        self.ready_once = False
        self._regate = True
        if self.state.final:
            self._adopt(job)
            self.start()
            return
        if self.run is not None:
            self._next_job = job
            self.restart(reason)
            return
        self._adopt(job)
        if self._wake is not None:
            self._wake.set()
        else:
            self._host.changed()  # It waits at the gate: the gate looks again.

    def _adopt(self, job: Job) -> None:
        if job.spec.limits != self.job.spec.limits:
            self.limits = job.spec.limits
        self.job = job
        if self._log is not None and self._log.max_bytes is not None:
            self._log.max_bytes = job.spec.log_max_size

    def retire(self, reason: str) -> bool:
        """Stop it for good: it is no longer wanted (scaled down, removed
        from the manifest). False when it had ended."""
        self.retired = True
        return self.stop(reason)

    def start(self) -> bool:
        """Start an instance that has ended (or was skipped). False when it has not ended."""
        if not self.state.final:
            return False
        self.want, self._down_reason = Want.UP, ""
        self.totals.reason = ""
        self.budget.reset()
        self.transition(State.PENDING)
        self._host.launch(self)
        return True

    def pause(self, known: ProcessTree) -> bool:
        """SIGSTOP its whole tree; its timeout and readiness deadline stop too."""
        run = self.run
        if run is None or run.paused or not run.child.running or not self.may(State.PAUSED):
            return False
        if run.deadline is not None:
            run.deadline.pause()
        self._host.ipc.pause(self)
        if run.probe is not None:
            # The probe starts afresh, with a whole timeout, on resume.
            run.probe.cancel()
            run.probe = None
        if run.liveness is not None:
            # A stopped tree cannot answer: its liveness is asked again on resume.
            run.liveness.cancel()
            run.liveness = None
        run.child.suspend(known)
        run.paused = True
        self.transition(State.PAUSED)
        self._host.bus.publish(events.Paused(self.process, self.name))
        return True

    def resume(self, known: ProcessTree) -> bool:
        run = self.run
        if run is None or not run.paused or self.state is not State.PAUSED:
            return False
        run.child.resume(known)
        run.paused = False
        if run.child.running:
            if run.deadline is not None:
                run.deadline.resume()
            self._host.ipc.resume(self)
            probed = self.job.spec.ready is not None
            if probed and not run.ready:
                self._start_probe(run)
            elif run.cut is None:
                self._start_liveness(run)
            self.transition(State.READY if probed and run.ready else State.RUNNING)
        self._host.bus.publish(events.Resumed(self.process, self.name))
        return True

    def signal(self, sig: int) -> bool:
        """Deliver just `sig` to its process group."""
        return self.run is not None and self.run.child.send_signal(sig)

    def send(self, data: bytes) -> bool:
        """Write to its stdin."""
        return self.run is not None and self.run.child.write_stdin(data)

    def check_limits(self, changes: dict[str, Any]) -> None:
        """Refuse (UsageError) a `nofile` or `nproc` below what its live tree uses."""
        child = self.child
        if child is not None and child.running and not self.remote:
            limits.check_lowering(self.name, child.pid, changes)

    def set_limits(self, changes: dict[str, Any]) -> None:
        """Apply parsed limits to the live tree and to later runs."""
        self.limits = dataclasses.replace(self.limits, **changes)
        child = self.child
        # (A run on a cluster keeps the limits it started with.)
        if child is not None and child.running and not self.remote:
            limits.set_live_rlimits(child.pid, changes)
            self._host.enforcer.apply(self, set(changes))

    def breach(self, limit: str, value: float, maximum: float, mechanism: str, reason: str) -> None:
        """A limit was exceeded: stop the run; `on_limit` then decides
        between the end and a restart."""
        run = self.run
        if run is None or run.cut is not None:
            return  # Its run is being ended already; the first reason stands.
        action = self.job.spec.on_limit
        self._host.bus.publish(events.LimitExceeded(self.process, self.name, limit=limit, value=value, maximum=maximum, action=action, mechanism=mechanism))
        self._cut(Cut.LIMIT, "limit exceeded", reason)

    def hung(self, why: str) -> None:
        """It stopped showing signs of life (its watchdog went unfed): stop
        the run as failed; the restart policy decides what follows."""
        run = self.run
        if run is None or run.cut is not None or not run.child.running:
            return
        self._host.bus.publish(events.Notice(self.process, self.name, message=f"{why}; stopping it", level="error"))
        self._cut(Cut.HUNG, "hung", why)

    # -------------------------------------------------------------- life

    def launch(self) -> asyncio.Task[None]:
        self._task = asyncio.get_running_loop().create_task(self._live())
        return self._task

    async def _live(self) -> None:
        try:
            await self._life()
        except asyncio.CancelledError:
            if self._spawned:
                raise
            # `stop` cancels a runner only while it waits (for dependencies,
            # a slot, a backoff or its spawn): nothing of it runs.
            self.run = None
            self._end_unstarted()
        finally:
            if self._log is not None:
                self.totals.log_lost_bytes = self._log.lost_bytes
                self._log.close()
                self._log = None

    def _end_unstarted(self) -> None:
        """It ends while it waits, before this run started."""
        if self.state.final:
            return
        why = self._down_reason or "stopped before it started"
        if self.started_once:
            self.transition(State.STOPPED, why)
        else:
            self.transition(State.SKIPPED, why)
            self._host.bus.publish(events.Skipped(self.process, self.name, why=why))
        self._host.ended(self)

    async def _life(self) -> None:
        host = self._host
        host.bus.publish(events.Queued(self.process, self.name))
        budget = self.budget
        why = ""
        while True:
            if self._next_job is not None:
                self._adopt(self._next_job)
                self._next_job = None
            if self._regate:
                self._regate = False
                if self.state is not State.PENDING:
                    self.transition(State.PENDING, why)
                blocked = await host.dependencies(self)
                if blocked:
                    self._finish(Ending(State.SKIPPED, blocked))
                    host.bus.publish(events.Skipped(self.process, self.name, why=blocked))
                    return
            spec = self.job.spec
            ticket = await host.slot(self)
            if host.stopping:
                # The stop came while it waited for its slot: nothing starts after it.
                host.release(ticket)
                self.want = Want.DOWN
                self._end_unstarted()
                return
            try:
                ending, run_s = await self._run_once(ticket)
            finally:
                host.release(ticket)
            if self.want is Want.AGAIN and not host.stopping:
                self.want = Want.UP
                self.totals.restarts += 1
                why, self._again_reason = self._again_reason, ""
                host.bus.publish(events.Restarting(self.process, self.name, attempt=self.totals.restarts, delay_s=0.0, reason=why))
                continue
            if run_s >= spec.min_uptime_s:
                budget.reset()
            if not self._restarts_after(ending.state):
                self._finish(ending)
                return
            if budget.used >= spec.max_restarts:
                self._give_up(ending)
                return
            if budget.used == 0:
                budget.since = time.time()
            budget.used += 1
            delay = min(spec.backoff_s * 2 ** (budget.used - 1), MAX_BACKOFF_S)
            self.totals.restarts += 1
            after = f" after: {ending.reason}" if ending.reason else ""
            self.transition(State.BACKOFF, f"restart {self.totals.restarts} in {delay:g}s{after}")
            host.bus.publish(events.Restarting(self.process, self.name, attempt=self.totals.restarts, delay_s=delay, reason=ending.reason))
            self._wake = asyncio.Event()
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake = None

    def _restarts_after(self, state: State) -> bool:
        """Whether the restart policy wants another run (the budget aside)."""
        if self._host.stopping or self.want is Want.DOWN:
            return False
        spec = self.job.spec
        if spec.max_restarts == 0:
            return False
        if state is State.LIMIT_EXCEEDED:
            return spec.on_limit == "restart"
        if spec.restart == "always":
            return True
        return spec.restart == "on-failure" and state.failure

    def _give_up(self, ending: Ending) -> None:
        """The policy wants another run, but the budget is spent: end here, and
        say so everywhere (state, summary, events, the log and the view)."""
        totals, budget = self.totals, self.budget
        why = ending.reason or status_text(ending.state, totals.exit_code, totals.signal)
        within = time.time() - budget.since if budget.since is not None else 0.0
        self._host.bus.publish(events.GaveUp(self.process, self.name, restarts=budget.used, within_s=within, why=why))
        restarts = f"{budget.used} restart{'s' if budget.used != 1 else ''}"
        self._finish(Ending(ending.state, f"gave up after {restarts} in {format_duration(within)}: {why}"))

    def _finish(self, ending: Ending) -> None:
        self.totals.reason = ending.reason
        self.transition(ending.state, ending.reason)
        self._host.ended(self)

    async def _open_log(self) -> LogFile:
        """Its log, opened at its first start (truncated) and kept across
        restarts (appended to). One that cannot be opened fails this start
        with one line (SpawnError), never the supervisor."""
        if self._log is None:
            try:
                self._log = await self._host.open_log(self.job, truncate=not self.started_once)
                self._log.on_trouble = self.log_trouble
            except (OSError, StateDirError) as exc:
                why = str(exc) if isinstance(exc, StateDirError) else f"{self.log_path}: {exc.strerror or exc}"
                raise SpawnError(f"cannot write its log: {why}") from None
        return self._log

    @property
    def log_position(self) -> int:
        """How much of its output its log has taken (0 before its first start)."""
        return self._log.position if self._log is not None else 0

    def log_trouble(self, error: OSError | None, lost_bytes: int) -> None:
        """Its log stopped taking writes (`error`), or takes them again."""
        self.totals.log_lost_bytes = lost_bytes
        if error is not None:
            self.totals.log_error = error.strerror or str(error)
            message = f"its log {self.log_path} refuses writes ({self.totals.log_error}): its output is still shown, not logged, until the log takes writes again"
            self._host.bus.publish(events.Notice(self.process, self.name, message=message, level="warning"))
        else:
            message = f"its log {self.log_path} takes writes again; {lost_bytes:,} bytes of output are missing from it ({self.totals.log_error})"
            self._host.bus.publish(events.Notice(self.process, self.name, message=message))

    async def _run_once(self, ticket: int) -> tuple[Ending, float]:
        """Spawn, probe and wait for one run. Returns how it ended and its length."""
        host, job = self._host, self.job
        spec = job.spec
        env = host.env(job)
        # Before STARTING: a stop during the look is a stop while it waited.
        held = await self._port_held(env)
        self.transition(State.STARTING)
        if held:
            host.bus.publish(events.Notice(job.process, job.name, message=held, level="error"))
            return Ending(State.FAILED, held), 0.0
        log_probe = LogProbe(spec.ready.target) if spec.ready and spec.ready.kind == "log" else None
        process, instance, publish = job.process, job.name, host.bus.publish

        def on_output(stream: str, text: str) -> None:
            publish(events.Output(process, instance, stream=stream, text=text))
            if log_probe is not None:
                log_probe.feed(text)

        remote = self.remote
        join_fds = [] if remote else host.enforcer.join_fds(self)
        run: Run | None = None
        try:
            request = SpawnRequest(
                job.cmd, job.cwd, env, await self._open_log(), on_output, self.limits, spec.nice, tuple(join_fds), host.ipc.fds(spec), host.bus.flow,
                host.terminals if spec.tty and not remote else None,
                on_usage=(lambda usage: host.recorder.measured(self, usage)) if remote else None,
            )  # fmt: skip
            child = self.executor.child(request)
            # The run exists from here: a stop while the child starts waits
            # for it (or, for a start still to come on a cluster, gives it up).
            run = self.run = Run(child, ticket, env, log_probe)
            pid = await child.start()
        except SpawnError as exc:
            self.run = None
            if run is not None and run.cut is Cut.REQUEST:
                return Ending(State.STOPPED, run.why), 0.0
            self.totals.exit_code = 127
            publish(events.Notice(process, instance, message=str(exc), level="error"))
            return Ending(State.FAILED, str(exc)), 0.0
        finally:
            close_fds(join_fds)
        host.recorder.started(self, child, sampled=not remote)
        if not remote:
            run.notify_probe = host.ipc.started(self, pid, spec)
            host.enforcer.apply(self)
        self.totals.pid = pid
        if self.totals.started_at is None:
            self.totals.started_at = child.started_at
        self.started_once = True
        publish(events.Started(process, instance, pid=pid, attempt=self.totals.restarts + 1))
        self.transition(State.RUNNING)
        if self.want is Want.DOWN or host.stopping:
            # A stop came while the child was starting.
            self._cut(Cut.REQUEST, self._down_reason or "stopped", self._down_reason or "stopped")
        elif self.want is Want.AGAIN:
            # So did a restart.
            self._cut(Cut.RESTART, self._again_reason, self._again_reason)
        if spec.timeout_s:
            run.deadline = Deadline(spec.timeout_s, self._timed_out)
        if spec.ready is None:
            self.ready_once = True
            self._start_liveness(run)
        else:
            self._start_probe(run)
        try:
            exit = await child.wait()
        finally:
            run.close()
            host.ipc.ended(self)
            # (An OOM kill the kernel made is seen here, and becomes the run's cut.)
            host.enforcer.ended(self)
        if run.stopping is not None:
            await run.stopping
        self.run = None
        run_s = exit.ended_at - child.started_at
        totals = self.totals
        totals.ended_at = exit.ended_at
        totals.duration_s = (totals.duration_s or 0.0) + run_s
        totals.exit_code = exit.returncode if exit.returncode >= 0 else None
        totals.signal = -exit.returncode if exit.returncode < 0 else None
        cut, why = (run.cut, run.why) if run.cut is not None else (exit.cut, exit.why)
        ending = judge(exit.returncode, cut, why, cpu_time_limited=self.limits.cpu_time is not None)
        if run.cut is None and exit.breach is not None:
            breach = exit.breach
            publish(events.LimitExceeded(process, instance, limit=breach.limit, value=breach.value, maximum=breach.maximum, action=spec.on_limit, mechanism=breach.mechanism))
        if ending.kernel_limit:
            publish(events.LimitExceeded(process, instance, limit=ending.kernel_limit, value=0, maximum=0, action=spec.on_limit))
        host.recorder.ended(self, child, exit, ending.state, run_s)
        publish(events.Exited(process, instance, status=ending.state, code=totals.exit_code, signal=totals.signal, duration_s=run_s))
        return ending, run_s

    # -------------------------------------------------- cutting a run short

    def _mark(self, run: Run, cut: Cut, label: str, why: str, known: ProcessTree | None) -> bool:
        """Record the first cut of a run and enter STOPPING (`label` goes with
        the state, `why` with the verdict). False when it was cut already."""
        if run.cut is not None:
            return False
        run.cut, run.why = cut, why
        # Once procctl ends the run, its watchdog no longer matters.
        self._host.ipc.stopping(self)
        if run.paused:
            # Its tree must be able to act on the stop signal.
            run.child.resume(known)
            run.paused = False
        self.transition(State.STOPPING, label)
        return True

    def _cut(self, cut: Cut, label: str, why: str, known: ProcessTree | None = None) -> None:
        """End the current run gracefully for `cut`."""
        run = self.run
        if run is None:
            return
        if not run.child.pid:
            if cut is Cut.REQUEST:
                self._give_up_start(run, why)
            return
        if not run.child.running:
            # It ended already: only a limit the kernel enforced (an OOM kill
            # seen after the exit) can still say why.
            if cut is Cut.LIMIT and run.cut is None:
                run.cut, run.why = cut, why
            return
        if self._mark(run, cut, label, why, known):
            run.stopping = asyncio.get_running_loop().create_task(self._stop(run, known))

    def _give_up_start(self, run: Run, why: str) -> None:
        """Asked to stop before its start happened (a job queued on a
        cluster): the child gives up its start, which then fails."""
        if run.cut is None:
            run.cut, run.why = Cut.REQUEST, why
            run.child.kill()

    async def _stop(self, run: Run, known: ProcessTree | None) -> None:
        sig, timeout_s = self.job.spec.stop_signal, self._host.stop_timeout_s(self.job)
        self._host.enforcer.stopping(self)
        if await run.child.stop(sig, timeout_s, known):
            message = f"did not stop within {timeout_s:g}s of {signal.Signals(sig).name}; sent SIGKILL"
            self._host.bus.publish(events.Notice(self.process, self.name, message=message, level="warning"))

    def _timed_out(self) -> None:
        timeout = self.job.spec.timeout_s
        self._host.bus.publish(events.Notice(self.process, self.name, message=f"timeout of {timeout:g}s reached", level="warning"))
        self._cut(Cut.TIMEOUT, "timed out", f"ran longer than its timeout of {timeout:g}s")

    # ------------------------------------------------------------ probes

    async def _port_held(self, env: dict[str, str]) -> str:
        """Why it cannot start: the port its tcp or http probe would ask is
        held already (by a process that cannot be its own: it has not
        started). '' when nothing holds it."""
        spec = self.job.spec
        for probe in (spec.ready, spec.liveness):
            if probe is not None and probe.kind in ("tcp", "http"):
                try:
                    await held_before_start(probe.kind, substitute_port(probe.target, env))
                except PortHeld as exc:
                    return f"port {exc}"
        return ""

    def _start_liveness(self, run: Run) -> None:
        if self.job.spec.liveness is not None and run.liveness is None:
            run.liveness = asyncio.get_running_loop().create_task(self._live_check(run))

    async def _live_check(self, run: Run) -> None:
        spec = self.job.spec.liveness
        assert spec is not None
        why = await watch_liveness(spec, cwd=self.job.cwd, env=run.env, root=run.child.pid)
        run.liveness = None
        if self.run is run:
            self.hung(why)

    def _start_probe(self, run: Run) -> None:
        """(Re)start the readiness probe of the run, with a full timeout."""
        run.probe = asyncio.get_running_loop().create_task(self._probe(run))

    async def _probe(self, run: Run) -> None:
        spec = self.job.spec.ready
        assert spec is not None
        held = ""
        try:
            passed = await poll_probe(spec, cwd=self.job.cwd, env=run.env, log_probe=run.log_probe, notify_probe=run.notify_probe, root=run.child.pid)
        except PortHeld as exc:
            passed, held = False, f"not ready: {exc}"
        if self.run is not run or not run.child.running:
            return
        if not passed:
            why = held or f"not ready after {spec.timeout_s:g}s ({spec.kind} probe)"
            self._host.bus.publish(events.Notice(self.process, self.name, message=why, level="error"))
            self._cut(Cut.PROBE, "not ready", why)
        elif self.may(State.READY):
            run.ready = self.ready_once = True
            self.transition(State.READY)
            self._host.bus.publish(events.Ready(self.process, self.name, probe=spec.kind))
            self._start_liveness(run)

