"""How runs end: the verdict on one run (`judge`), and what each instance and
the whole run did (`InstanceResult`, `RunResult`, data the UI renders).

`judge` is the one place that decides how a run ended: the summary, the
`exited` event and the run history all take its answer.
"""

from __future__ import annotations

import dataclasses
import enum
import signal
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload
from pathlib import Path

from procctl.states import Ended, State


class Cut(enum.Enum):
    """Why procctl ended a run, when it did. The first cut of a run decides its
    verdict: a run being stopped for its timeout stays timed out, whatever
    else is asked of it meanwhile."""

    TIMEOUT = "timeout"
    PROBE = "probe"
    """Its readiness probe did not pass in time."""
    LIMIT = "limit"
    """A limit the watchdog or a cgroup enforces was exceeded."""
    REQUEST = "request"
    """Asked to stop: kill, Ctrl-C, shutdown, fail_fast, scale down."""
    RESTART = "restart"
    """Asked to restart: this run stops, the next follows at once."""
    HUNG = "hung"
    """It stopped showing signs of life: its watchdog went unfed. A failure:
    the restart policy decides what follows."""
    LOST = "lost"
    """The machine's process that ran it (a cluster's worker) was lost, and
    the run with it. A failure: the restart policy decides what follows."""


class Ending(NamedTuple):
    state: State
    reason: str = ""
    """Why it ended so: 'ran longer than its timeout of 5s', 'killed on request'."""
    kernel_limit: str | None = None
    """The limit the kernel enforced by ending the run (`cpu_time`, `fsize`)."""


def judge(returncode: int, cut: Cut | None, why: str, *, cpu_time_limited: bool) -> Ending:
    """How a run ended, from its return code (-N: signal N) and the cut, if
    procctl ended it (`why`: the cut's reason)."""
    if cut is Cut.REQUEST or cut is Cut.RESTART:
        # Whatever the exit looked like, it ended because we asked.
        return Ending(State.STOPPED, why)
    if cut is Cut.LIMIT:
        return Ending(State.LIMIT_EXCEEDED, why)
    if cut is Cut.TIMEOUT:
        return Ending(State.TIMED_OUT, why)
    if cut is Cut.PROBE or cut is Cut.HUNG or cut is Cut.LOST:
        return Ending(State.FAILED, why)
    if returncode in (-signal.SIGXCPU, -signal.SIGXFSZ) or (returncode == -signal.SIGKILL and cpu_time_limited):
        # At its hard RLIMIT_CPU the kernel sends SIGKILL; nothing of ours did (no cut).
        which = "fsize" if returncode == -signal.SIGXFSZ else "cpu_time"
        return Ending(State.LIMIT_EXCEEDED, f"{which} limit reached ({signal.Signals(-returncode).name})", which)
    if returncode == 0:
        return Ending(State.EXITED)
    if returncode > 0:
        return Ending(State.FAILED)
    return Ending(State.KILLED)


@dataclasses.dataclass
class Totals:
    """What an instance's runs add up to; the supervisor updates it as they go."""

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
    peak_rss_bytes: int | None = None
    """Highest RSS of the whole process tree over every run; None if never measured."""
    cpu_time_s: float | None = None
    """User + system CPU seconds of the tree over every run, descendants included."""
    mean_cpu_percent: float | None = None
    """cpu_time_s over duration_s (100 = one core busy throughout)."""
    log_lost_bytes: int = 0
    """Output its log file did not get (a full disk, an I/O error): it was
    shown and streamed all the same."""
    log_error: str = ""
    """Why the log refused writes, when it did."""


@dataclasses.dataclass(kw_only=True)
class InstanceResult(Totals, Ended):
    """What one instance did over the whole run: its totals and the state it
    is in, taken together at one moment."""

    name: str
    """Instance name (`web.2`)."""
    process: str
    state: State
    log_path: Path | None = None


class Results(Sequence[InstanceResult]):
    """Every instance's result, in plan order: those held as objects, and the
    big pools' ledgers (results made when read, see `feeder.Ledger`)."""

    def __init__(self, held: Sequence[InstanceResult], ledgers: Sequence[Sequence[InstanceResult]] = (), *, order: Sequence[str] = ()) -> None:
        by_process: dict[str, list[InstanceResult]] = {}
        for result in held:
            by_process.setdefault(result.process, []).append(result)
        lazy = {ledger[0].process: ledger for ledger in ledgers if len(ledger)}
        self._parts: list[Sequence[InstanceResult]] = []
        for process in [*order, *(p for p in by_process if p not in order)]:
            if process in lazy:
                self._parts.append(lazy[process])
            elif process in by_process:
                self._parts.append(by_process[process])
        self._len = sum(len(part) for part in self._parts)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> InstanceResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[InstanceResult]: ...

    def __getitem__(self, index: int | slice) -> InstanceResult | Sequence[InstanceResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        for part in self._parts:
            if 0 <= index < len(part):
                return part[index]
            index -= len(part)
        raise IndexError(index)

    def __iter__(self) -> Iterator[InstanceResult]:
        for part in self._parts:
            yield from part

    @property
    def parts(self) -> Sequence[Sequence[InstanceResult]]:
        """Each process's results, in plan order."""
        return self._parts


class Unrun(NamedTuple):
    """So many instances of a big pool that never ran, and why."""

    process: str
    count: int
    reason: str


def summed(instances: Sequence[InstanceResult]) -> Iterator[InstanceResult | Unrun]:
    """Every result for a summary to sum, in plan order, except that the
    instances of a big pool that never ran come as one `Unrun` per pool
    (each made would cost seconds for a million)."""
    for part in instances.parts if isinstance(instances, Results) else (instances,):
        ran = getattr(part, "ran", None)
        if ran is None:
            yield from part
            continue
        yield from ran()
        unrun = len(part) - part.recorded  # type: ignore[attr-defined]
        if unrun:
            yield Unrun(part.process, unrun, part.unrun_reason)  # type: ignore[attr-defined]


@dataclasses.dataclass
class RunResult:
    instances: Sequence[InstanceResult]
    exit_code: int
    """0 all ended well or were stopped on request; 1 a process failed; 130
    interrupted; 124 the run's --timeout ran out; or the code of the first
    `exit_on_end` instance to end."""
    interrupted: bool = False
    first_failure: InstanceResult | None = None
    duration_s: float = 0.0
