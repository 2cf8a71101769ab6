"""The supervisor's record of one instance, and the one writer of its state."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from procctl import events
from procctl.engine.enforcer import Enforcement
from procctl.engine.outcome import Cut, InstanceResult, Totals
from procctl.states import IllegalTransition, State, may_follow

if TYPE_CHECKING:
    from procctl.config.plan import Job
    from procctl.engine.probes import LogProbe
    from procctl.engine.process import Child


class Instance:
    """The supervisor's live record of one job."""

    def __init__(self, job: Job, log_path: os.PathLike[str], publish: Callable[[events.Event], None], changed: Callable[[], None]) -> None:
        self.job = job
        self.state = State.PENDING
        self.log_path = log_path
        self._publish = publish
        self._changed = changed
        self.child: Child | None = None
        self.totals = Totals()
        self.started_once = False
        self.ready_once = False
        self.stop_requested = False
        self.stop_reason = ""
        self.cut: Cut | None = None
        """Why procctl is ending the current run, if it is (the first reason wins)."""
        self.cut_reason = ""
        self.stop_task: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancellable = False
        """True while waiting (dependencies, a slot, a backoff): nothing to stop yet."""
        self.log_fd = -1
        self.paused = False
        self.pool_ticket: int | None = None
        """The pool slot of the current run, while it holds one."""
        self.restart_requested = False
        """Set by `restart`: the next run follows at once, without backoff."""
        self.wake = asyncio.Event()
        """Cuts a backoff wait short (restart, start)."""
        self.timeout_handle: asyncio.TimerHandle | None = None
        self.timeout_left_s: float | None = None
        """While paused: what was left of the job's timeout."""
        self.probe_task: asyncio.Task[None] | None = None
        self.limits = job.spec.limits
        """In force for this instance; `procctl limits` changes it for the live
        tree and for later runs."""
        self.enforcement = Enforcement()
        """How the current run is held to its memory and CPU limits."""
        self.probe_env: dict[str, str] = {}
        self.log_probe: LogProbe | None = None

    @property
    def name(self) -> str:
        return self.job.name

    def may(self, state: State) -> bool:
        """Whether `state` may follow the current one."""
        return may_follow(self.state, state)

    def transition(self, state: State, reason: str = "") -> None:
        """The only change of an instance's state: refused unless the table
        allows it; published as a `state` event."""
        if not may_follow(self.state, state):
            raise IllegalTransition(self.name, self.state, state)
        self.state = state
        if reason:
            self.totals.reason = reason
        self._publish(events.StateChanged(self.job.process, self.name, state=state, reason=reason))
        self._changed()

    def result(self) -> InstanceResult:
        """Its totals and its state now, together."""
        return InstanceResult(**vars(self.totals), name=self.name, process=self.job.process, state=self.state, log_path=self.log_path)  # type: ignore[arg-type]
