"""One run of an instance: what exists from a spawn to the verdict on it.

A `Run` is made when the runner spawns a child and dropped once the child
has ended and been judged, so nothing of one run (its timer, its probe, why
it is being stopped, whether it is paused) can leak into the next.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from procctl.config.manifest import Limits
    from procctl.config.plan import Job
    from procctl.engine.child import ChildProcess
    from procctl.engine.outcome import Cut, Totals
    from procctl.engine.probes import LogProbe, NotifyProbe


class Instance(Protocol):
    """An instance as the runner's helpers see it (the enforcer, the
    recorder): what `InstanceRunner` shows of itself."""

    @property
    def name(self) -> str: ...

    @property
    def job(self) -> Job: ...

    @property
    def limits(self) -> Limits:
        """The limits in force now."""
        ...

    @property
    def totals(self) -> Totals:
        """Its figures over every run (the recorder adds each run's)."""
        ...

    @property
    def child(self) -> ChildProcess | None:
        """The child of its current run, if it has one."""
        ...

    @property
    def paused(self) -> bool: ...


class Want(enum.Enum):
    """What an instance is wanted to do when its current run ends."""

    UP = "up"
    """Follow the restart policy."""
    DOWN = "down"
    """Asked to stop (kill, Ctrl-C, fail_fast, scale down): stay down."""
    AGAIN = "again"
    """Asked to restart: the next run follows at once."""


class Deadline:
    """A timer that can be paused: a job's timeout does not run while it is paused."""

    def __init__(self, seconds: float, callback: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._callback = callback
        self._left: float | None = seconds
        self._handle: asyncio.TimerHandle | None = None
        self.resume()

    def pause(self) -> None:
        if self._handle is not None:
            self._left = max(self._handle.when() - self._loop.time(), 0.0)
            self._handle.cancel()
            self._handle = None

    def resume(self) -> None:
        if self._handle is None and self._left is not None:
            self._handle = self._loop.call_later(self._left, self._fire)

    def cancel(self) -> None:
        self.pause()
        self._left = None

    def _fire(self) -> None:
        self._handle = self._left = None
        self._callback()


class Run:
    """One spawn of an instance: made when its child started, dropped when
    the child has ended and been judged."""

    __slots__ = ("child", "ticket", "env", "log_probe", "notify_probe", "cut", "why", "paused", "ready", "deadline", "probe", "liveness", "stopping")

    def __init__(self, child: ChildProcess, ticket: int, env: dict[str, str], log_probe: LogProbe | None) -> None:
        self.child = child
        self.ticket = ticket
        """Its pool slot."""
        self.env = env
        self.log_probe = log_probe
        self.notify_probe: NotifyProbe | None = None
        """READY=1 on its notification socket (`ready = { notify = true }`)."""
        self.cut: Cut | None = None
        """Why procctl is ending this run, if it is: the first reason stands."""
        self.why = ""
        """The cut's reason, as the verdict will give it."""
        self.paused = False
        self.ready = False
        """Its readiness probe passed."""
        self.deadline: Deadline | None = None
        self.probe: asyncio.Task[None] | None = None
        self.liveness: asyncio.Task[None] | None = None
        """Its liveness probe, once it is ready (or started, with no readiness probe)."""
        self.stopping: asyncio.Task[None] | None = None

    def close(self) -> list[asyncio.Task[None]]:
        """The child has exited: its timers and probes end with it. The
        probes still under way are cancelled and returned: once they have
        ended, what an exec probe ran is gone too (engine/probes.py)."""
        if self.deadline is not None:
            self.deadline.cancel()
        probing = [task for task in (self.probe, self.liveness) if task is not None and not task.done()]
        for task in probing:
            task.cancel()
        return probing
