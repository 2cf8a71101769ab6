"""States of an instance and the result of a run: data the UI renders."""

from __future__ import annotations

import dataclasses
import enum
import signal
from pathlib import Path


class State(enum.StrEnum):
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    READY = "ready"
    STOPPING = "stopping"
    PAUSED = "paused"
    BACKOFF = "backoff"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"
    TIMED_OUT = "timed out"
    LIMIT_EXCEEDED = "limit exceeded"
    SKIPPED = "skipped"
    STOPPED = "stopped"
    """Ended because procctl was asked to stop it (Ctrl-C, fail_fast, kill)."""

    @property
    def final(self) -> bool:
        return self in _FINAL

    @property
    def failure(self) -> bool:
        return self in _FAILURES


_FINAL = {State.EXITED, State.FAILED, State.KILLED, State.TIMED_OUT, State.LIMIT_EXCEEDED, State.SKIPPED, State.STOPPED}
_FAILURES = {State.FAILED, State.KILLED, State.TIMED_OUT, State.LIMIT_EXCEEDED}


def signal_name(signum: int | None) -> str:
    if signum is None:
        return ""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def status_text(state: State, exit_code: int | None, signum: int | None) -> str:
    """The state with how it ended: `exited 0`, `failed 3`, `killed SIGTERM`."""
    if state is State.EXITED:
        return f"exited {exit_code}" if exit_code is not None else "exited"
    if state is State.FAILED:
        return f"failed {exit_code}" if exit_code is not None else "failed"
    if state is State.KILLED:
        return f"killed {signal_name(signum)}"
    return str(state)


def exit_text(exit_code: int | None, signum: int | None) -> str:
    """The exit status as a shell reports it: the code, or 128+N for signal N."""
    if exit_code is not None:
        return str(exit_code)
    if signum is not None:
        return str(128 + signum)
    return "-"


@dataclasses.dataclass
class InstanceResult:
    """What one instance did over the whole run."""

    name: str
    """Instance name (`web.2`)."""
    process: str
    state: State
    exit_code: int | None = None
    """Exit code of the last run; None if it never ran or a signal ended it."""
    signal: int | None = None
    """Signal that ended the last run, if any."""
    started_at: float | None = None
    """Epoch seconds of the first start."""
    ended_at: float | None = None
    duration_s: float | None = None
    """Sum of the wall time of every run."""
    restarts: int = 0
    pid: int | None = None
    """Pid of the last run."""
    reason: str = ""
    """Why it ended so: 'dependency db failed', 'not ready after 5s'."""
    log_path: Path | None = None
    peak_rss_bytes: int | None = None
    """Highest RSS of the whole process tree over every run; None if never measured."""
    cpu_time_s: float | None = None
    """User + system CPU seconds of the tree over every run, descendants included."""
    mean_cpu_percent: float | None = None
    """cpu_time_s over duration_s (100 = one core busy throughout)."""

    @property
    def status_text(self) -> str:
        return status_text(self.state, self.exit_code, self.signal)

    @property
    def exit_text(self) -> str:
        return exit_text(self.exit_code, self.signal)


@dataclasses.dataclass
class RunResult:
    instances: list[InstanceResult]
    exit_code: int
    """0 all ended well or were stopped on request; 1 a process failed; 130
    interrupted; 124 the run's --timeout ran out."""
    interrupted: bool = False
    first_failure: InstanceResult | None = None
    duration_s: float = 0.0
