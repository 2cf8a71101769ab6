"""An instance's runs, one after another: queued, gated on its
dependencies, given a pool slot, spawned (`_run_once`: the child, its
log, its probes and timeout, the verdict on its end), then restarted or
ended as the restart policy says (`engine/restarts.py`).

`Life` is a `RunWatch` (`engine/runwatch.py`: the state, the one
transition, the cut, the probes) that lives; the verbs the rest of procctl
calls are `InstanceRunner`'s (`engine/runner.py`).
"""

from __future__ import annotations

import asyncio

from procctl import events
from procctl.engine import restarts
from procctl.engine.child import SpawnRequest
from procctl.engine.enforcer import close_fds
from procctl.engine.logfile import LogFile
from procctl.engine.outcome import Cut, Ending, judge
from procctl.engine.probes import LogProbe, port_held
from procctl.engine.run import Deadline, Run, Want
from procctl.engine.runwatch import RunWatch
from procctl.errors import SpawnError
from procctl.states import State, status_text
from procctl.units import format_duration


class Life(RunWatch):
    """One instance's life, from its first queueing to its last run."""

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
        if self.want is Want.AGAIN and self.state.final and not self._host.stopping:
            # Wanted again (`rejoin`) while the stop that cancelled its wait
            # was being taken: a run that ends is restarted by `_life`, this
            # one never ran.
            self._begin_again()

    def _begin_again(self) -> None:
        """A new life for an instance that has ended (`start`, `rejoin`)."""
        self.want, self._down_reason = Want.UP, ""
        self.totals.reason = ""
        self.budget.reset()
        self.transition(State.PENDING)
        self._host.launch(self)

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
            if budget.spent(spec):
                self._give_up(ending)
                return
            delay = budget.take(spec)
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
        return restarts.wanted(self.job.spec, state)

    def _give_up(self, ending: Ending) -> None:
        """The policy wants another run, but the budget is spent: end here, and
        say so everywhere (state, summary, events, the log and the view)."""
        totals, budget = self.totals, self.budget
        why = ending.reason or status_text(ending.state, totals.exit_code, totals.signal)
        within = budget.within_s()
        self._host.bus.publish(events.GaveUp(self.process, self.name, restarts=budget.used, within_s=within, why=why))
        restarts = f"{budget.used} restart{'s' if budget.used != 1 else ''}"
        self._finish(Ending(ending.state, f"gave up after {restarts} in {format_duration(within)}: {why}"))

    def _finish(self, ending: Ending) -> None:
        self.totals.reason = ending.reason
        self.transition(ending.state, ending.reason)
        self._host.ended(self)

    def _open_log(self) -> LogFile:
        """Its log, made at its first start (truncated) and kept across
        restarts (appended to). Its file comes with its first byte; one
        already there is opened by a local child's spawn, off the loop
        (`LogFile.open_file`), or here for one that runs elsewhere. One that
        cannot be opened fails this start with one line (SpawnError), never
        the supervisor."""
        if self._log is None:
            self._log = self._host.open_log(self.job, truncate=not self.started_once)
            self._log.on_trouble = self.log_trouble
        if self.remote:
            self._log.open_file()
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
        held = await port_held(spec, env)
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
                job.cmd, job.cwd, env, self._open_log(), on_output, self.limits, spec.nice, tuple(join_fds), host.ipc.fds(spec), host.bus.flow,
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
        probing: list[asyncio.Task[None]] = []
        try:
            exit = await child.wait()
        finally:
            probing = run.close()
            host.ipc.ended(self)
            # (An OOM kill the kernel made is seen here, and becomes the run's cut.)
            host.enforcer.ended(self)
        if probing:
            # A cancelled task acts on it at its next turn: until then an
            # exec probe's command runs on, past the run, even past the
            # supervisor's end (the last sweep would find it).
            await asyncio.wait(probing)
        self._ready_before_exit(run)
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
