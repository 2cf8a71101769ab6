"""One instance, as the rest of procctl asks things of it: stop, kill,
restart, start, replace (a reload), retire (scale down), pause, resume,
signal, send, its limits, a breach of them, its result.

An `InstanceRunner` lives as long as its supervisor knows the instance. It
is the instance's `Life` (`engine/life.py`: its runs one after another, on
`engine/runwatch.py`'s state and cut) with these verbs: each asks the state
table whether it may, acts on the current `Run`, and lets the life carry
on from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from procctl import events
from procctl.engine import limits
from procctl.engine.life import Life
from procctl.engine.outcome import Cut, InstanceResult, Totals
from procctl.engine.run import Want
from procctl.states import State

if TYPE_CHECKING:
    from procctl.config.plan import Job
    from procctl.engine.tree import ProcessTree


class InstanceRunner(Life):
    """One instance, from its first queueing to its last run: its life and its verbs."""

    def figures(self) -> Totals:
        """Its totals now (what its log has missed brought up to date)."""
        if self._log is not None:
            self.totals.log_lost_bytes = self._log.lost_bytes
        return self.totals

    def result(self) -> InstanceResult:
        """Its totals and its state now, together."""
        return InstanceResult(**vars(self.figures()), name=self.name, process=self.process, state=self.state, log_path=self.log_path)

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

    def retire(self, reason: str) -> bool:
        """Stop it for good: it is no longer wanted (scaled down, removed
        from the manifest). False when it had ended."""
        self.retired = True
        return self.stop(reason)

    def rejoin(self, job: Job, reason: str) -> None:
        """Wanted again, as `job` says now (its own name and number), after a
        scale down or a stop: a scale up took its number back, or a reload
        added back what it had removed. It runs again — at once if it has
        ended, after the end of a run being stopped (the number's PORT is
        free by then) — and its log goes on, appended to or rotated as after
        a restart."""
        self.retired = False
        if self.state.final:
            self._adopt(job)
            self._begin_again()
            return
        self._next_job = job
        if self.want is Want.DOWN:
            # Its stop is under way: the next run follows it, as a restart's
            # does (or, if the stop cancelled its wait, `Life` starts it).
            self.want, self._again_reason = Want.AGAIN, reason

    def start(self) -> bool:
        """Start an instance that has ended (or was skipped). False when it has not ended."""
        if not self.state.final:
            return False
        self._begin_again()
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
        self.limits = self.limits._replace(**changes)
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
