"""An instance as it stands, and what watches and cuts its current run.

`RunWatch` holds what outlives a run (its state, its totals, the limits in
force, whether it was ever ready, what it is wanted to do next: `Want`);
what belongs to one run lives on its `Run` (`engine/run.py`), made at each
spawn and dropped when that run has ended, so nothing is reset by hand
between runs. `transition` is the one writer of the instance's state: it
refuses whatever `states.FOLLOWS` does not allow and publishes the change.
Here too is what ends a run early — a stop, its timeout, a failed
readiness or liveness probe, a watchdog gone unfed — always through one
cut (`_cut`), the first of which decides the verdict.

Its runs one after another are `Life`'s (`engine/life.py`), the verbs the
rest of procctl calls `InstanceRunner`'s (`engine/runner.py`). What it
needs of its supervisor comes through `Host` (`engine/host.py`).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from procctl import events
from procctl.engine.outcome import Cut, Totals
from procctl.engine.probes import PortHeld, poll_probe, watch_liveness
from procctl.engine.restarts import RestartBudget
from procctl.engine.run import Run, Want
from procctl.states import IllegalTransition, State, may_follow

if TYPE_CHECKING:
    from procctl.config.manifest import Limits
    from procctl.config.plan import Job
    from procctl.engine.child import ChildProcess
    from procctl.engine.host import Host
    from procctl.engine.logfile import LogFile
    from procctl.engine.store import StateDir
    from procctl.engine.tree import ProcessTree


class RunWatch:
    """One instance's state and its current run."""

    def __init__(self, job: Job, state_dir: StateDir, host: Host) -> None:
        self.job = job
        self.name = job.name
        """Its instance name (its job's: attributes, not properties, read
        a dozen times a run)."""
        self.process = job.process
        """Its process's name."""
        self._state_dir = state_dir
        self._log_path: Path | None = None
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
    def log_path(self) -> Path:
        """Where its log goes; the file is made with its first byte. (The
        path is made when first asked for: a big pool's instance that ends
        well never is, its ledger knows where its log would be.)"""
        path = self._log_path
        if path is None:
            path = self._log_path = self._state_dir.log_path(self.job.log_name)
        return path

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

    def _adopt(self, job: Job) -> None:
        if job.spec.limits != self.job.spec.limits:
            self.limits = job.spec.limits
        self.job = job
        self.name, self.process = job.name, job.process
        if self._log is not None and self._log.max_bytes is not None:
            self._log.max_bytes = job.spec.log_max_size

    def hung(self, why: str) -> None:
        """It stopped showing signs of life (its watchdog went unfed): stop
        the run as failed; the restart policy decides what follows."""
        run = self.run
        if run is None or run.cut is not None or not run.child.running:
            return
        self._host.bus.publish(events.Notice(self.process, self.name, message=f"{why}; stopping it", level="error"))
        self._cut(Cut.HUNG, "hung", why)

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
        self._cut(Cut.TIMEOUT, "timed out", f"ran longer than its timeout of {timeout:g}s")    # ------------------------------------------------------------ probes

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
            self._became_ready(run, spec.kind)
            self._start_liveness(run)

    def _became_ready(self, run: Run, probe: str) -> None:
        run.ready = self.ready_once = True
        self.transition(State.READY)
        self._host.bus.publish(events.Ready(self.process, self.name, probe=probe))

    def _ready_before_exit(self, run: Run) -> None:
        """The run has ended, and what it said last has been read (its pipes
        drained, its notifications taken): a READY=1 or a log line the probe
        waits for, written just before the exit, may be read only now, after
        the exit, when the probe's task has not had its turn and never will.
        The run was ready all the same, and its dependents may start."""
        spec = self.job.spec.ready
        if spec is None or run.ready or run.cut is not None or not self.may(State.READY):
            return
        probe = run.notify_probe if spec.kind == "notify" else run.log_probe if spec.kind == "log" else None
        if probe is not None and probe.passed.is_set():
            self._became_ready(run, spec.kind)
