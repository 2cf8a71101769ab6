"""The supervisor's record of one instance, and how one of its runs ended."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from procctl.engine.enforcer import Enforcement
from procctl.engine.state import InstanceResult, State

if TYPE_CHECKING:
    from procctl.config.plan import Job
    from procctl.engine.probes import LogProbe
    from procctl.engine.process import Child


class Instance:
    """The supervisor's live record of one job."""

    def __init__(self, job: Job, log_path: os.PathLike[str]) -> None:
        self.job = job
        self.state = State.PENDING
        self.child: Child | None = None
        self.result = InstanceResult(name=job.name, process=job.process, state=State.PENDING, log_path=log_path)  # type: ignore[arg-type]
        self.started_once = False
        self.ready_once = False
        self.stop_requested = False
        self.stop_reason = ""
        self.timed_out = False
        self.probe_failed = False
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
        self.breach = ""
        """Set when a limit was exceeded in the current run: what and by how much."""
        self.enforcement = Enforcement()
        """How the current run is held to its memory and CPU limits."""
        self.probe_env: dict[str, str] = {}
        self.log_probe: LogProbe | None = None

    @property
    def name(self) -> str:
        return self.job.name


def run_verdict(inst: Instance, child: Child, returncode: int) -> tuple[State, str | None]:
    """The state a run ended in, from its return code and what happened to it
    (a limit, its timeout, a failed probe); sets the result's reason. The
    second value names a limit the kernel enforced (`cpu_time`, `fsize`)."""
    result = inst.result
    spec = inst.job.spec
    if inst.breach:
        result.reason = inst.breach
        return State.LIMIT_EXCEEDED, None
    if returncode in (-signal.SIGXCPU, -signal.SIGXFSZ) or (
        # At its hard RLIMIT_CPU the kernel sends SIGKILL; nothing of ours did.
        returncode == -signal.SIGKILL and inst.limits.cpu_time is not None and not inst.stop_requested and not child.killed_hard
    ):
        which = "fsize" if returncode == -signal.SIGXFSZ else "cpu_time"
        result.reason = f"{which} limit reached ({signal.Signals(-returncode).name})"
        return State.LIMIT_EXCEEDED, which
    if inst.timed_out:
        result.reason = f"ran longer than its timeout of {spec.timeout_s:g}s"
        return State.TIMED_OUT, None
    if inst.probe_failed:
        return State.FAILED, None
    if returncode == 0:
        return State.EXITED, None
    if returncode > 0:
        result.reason = ""
        return State.FAILED, None
    return State.KILLED, None
