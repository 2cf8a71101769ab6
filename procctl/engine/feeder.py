"""A big pool, made as it runs: the instances of an `each` over more than
`plan.EAGER_JOBS` items are made one at a time, each when the pool admits
it, and each is folded into a `Ledger` (26 bytes) when it has ended.

A million items then cost what the pool runs at once plus 26 bytes
each, not a million runners and a million waiting tasks; and a stop stops
the queue at once: the feeder asks for a slot, and once a stop is asked for
no slot it gets starts anything.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, overload

from procctl.engine.outcome import InstanceResult, Totals
from procctl.states import State

if TYPE_CHECKING:
    from procctl.config.plan import Job, Segment
    from procctl.engine.runner import InstanceRunner

_STATES = list(State)
_CODES = {state: code for code, state in enumerate(_STATES)}
_NONE = -1
_NO_SIGNAL = 0


class FeederHost(Protocol):
    """What a feeder needs of its supervisor."""

    @property
    def stopping(self) -> bool: ...

    async def dependencies_of(self, job: Job) -> str:
        """Wait until the job's dependencies hold: '' then, else why they never will."""
        ...

    async def admit(self, job: Job) -> int:
        """Wait for a pool slot for `job`; its ticket."""
        ...

    def release(self, ticket: int) -> None: ...

    def start_admitted(self, job: Job, ticket: int) -> InstanceRunner:
        """Make the job's runner, holding `ticket`, and begin its life."""
        ...


class Ledger(Sequence[InstanceResult]):
    """What each instance of a big pool did, in 26 bytes apiece: its state,
    exit, signal, duration, restarts, peak RSS, CPU time, what its log missed
    and interned reasons. Read back as `InstanceResult`s, made when asked for."""

    def __init__(self, process: str, count: int, logs: Path) -> None:
        self.process = process
        self._logs = logs
        self._state = array("b", [_NONE]) * count
        """Index into `State`, or -1: not run (it waits, or the run ended first)."""
        self._exit = array("h", [_NONE]) * count
        self._signal = array("B", [_NO_SIGNAL]) * count
        self._duration = array("f", [math.nan]) * count
        self._restarts = array("H", [0]) * count
        self._peak_kib = array("I", [0]) * count
        self._cpu = array("f", [math.nan]) * count
        self._reason = array("H", [0]) * count
        self._log_lost = array("I", [0]) * count
        self._log_error = array("H", [0]) * count
        self._reasons: list[str] = [""]
        self._reason_ids: dict[str, int] = {"": 0}
        self.recorded = 0
        """How many have ended and been recorded."""
        self._end = 0
        """One past the last index recorded: items are admitted in order, so
        nothing past it ever ran."""
        self.first_bad: InstanceResult | None = None
        """The first recorded that did not exit 0 (a dependency on the pool
        then never holds as `succeeded`)."""
        self.unrun_reason = "stopped before it started"
        """Why the instances that never ran did not (a stop, a failed dependency)."""

    def __len__(self) -> int:
        return len(self._state)

    def _intern(self, reason: str) -> int:
        found = self._reason_ids.get(reason)
        if found is None:
            if len(self._reasons) >= 0xFFFF:
                return 0  # So many distinct reasons: the rest go unsaid.
            found = self._reason_ids[reason] = len(self._reasons)
            self._reasons.append(reason)
        return found

    def record(self, index: int, state: State, figures: Totals) -> None:
        """Instance `index` (0-based) has ended in `state`, its runs adding up
        to `figures` (its runner's totals, or a result): no result is made
        for it unless it is the first to end badly."""
        self.recorded += 1
        if index >= self._end:
            self._end = index + 1
        exit_code, signal = figures.exit_code, figures.signal
        self._state[index] = _CODES[state]
        self._exit[index] = exit_code if exit_code is not None and -32768 <= exit_code < 32768 else _NONE
        self._signal[index] = signal if signal is not None and 0 < signal < 256 else _NO_SIGNAL
        self._duration[index] = figures.duration_s if figures.duration_s is not None else math.nan
        self._restarts[index] = min(figures.restarts, 0xFFFF)
        peak = figures.peak_rss_bytes
        self._peak_kib[index] = min(peak >> 10, 0xFFFFFFFF) if peak else 0
        self._cpu[index] = figures.cpu_time_s if figures.cpu_time_s is not None else math.nan
        self._log_lost[index] = min(figures.log_lost_bytes, 0xFFFFFFFF)
        # Nearly always "" (id 0): looked up, not interned, at each end.
        ids = self._reason_ids
        reason = ids.get(figures.reason)
        self._reason[index] = reason if reason is not None else self._intern(figures.reason)
        error = ids.get(figures.log_error)
        self._log_error[index] = error if error is not None else self._intern(figures.log_error)
        if self.first_bad is None and not (state is State.EXITED and exit_code == 0):
            self.first_bad = self[index]

    @overload
    def __getitem__(self, index: int) -> InstanceResult: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[InstanceResult]: ...

    def __getitem__(self, index: int | slice) -> InstanceResult | Sequence[InstanceResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        number = index + 1
        name = f"{self.process}[{number}]"
        code = self._state[index]
        if code == _NONE:
            return InstanceResult(name=name, process=self.process, state=State.SKIPPED, reason=self.unrun_reason)
        duration, cpu, peak = self._duration[index], self._cpu[index], self._peak_kib[index]
        exit_code = self._exit[index]
        state = _STATES[code]
        # Only a run that did not end well points at its log: a million paths
        # made for the summary cost more than the summary.
        lost, log_error = self._log_lost[index], self._reasons[self._log_error[index]]
        log = None if state is State.EXITED and exit_code == 0 and not (lost or log_error) else self._logs / f"{self.process}.{number}.log"
        return InstanceResult(
            name=name,
            process=self.process,
            state=state,
            exit_code=exit_code if exit_code != _NONE else None,
            signal=self._signal[index] or None,
            duration_s=None if math.isnan(duration) else float(duration),
            restarts=self._restarts[index],
            peak_rss_bytes=peak << 10 if peak else None,
            cpu_time_s=None if math.isnan(cpu) else float(cpu),
            reason=self._reasons[self._reason[index]],
            log_path=log,
            log_lost_bytes=lost,
            log_error=log_error,
        )

    def __iter__(self) -> Iterator[InstanceResult]:
        for index in range(len(self)):
            yield self[index]

    def ran(self) -> Iterator[InstanceResult]:
        """The results of the instances that ran, in order. The others
        (`len(self) - self.recorded` of them, all `unrun_reason`) are
        counted, not made: a stopped run of a million items sums up in
        the time its few thousand runs take."""
        state = self._state
        for index in range(self._end):
            if state[index] != _NONE:
                yield self[index]


class Feeder:
    """The queue of one big pool: its next item, and its ledger."""

    def __init__(self, segment: Segment, host: FeederHost, logs: Path) -> None:
        self.segment = segment
        self._host = host
        self.next = 0
        """Index of the next item to admit."""
        self.ledger = Ledger(segment.spec.name, len(segment), logs)

    @property
    def process(self) -> str:
        return self.segment.spec.name

    @property
    def queued(self) -> int:
        """Items not admitted yet."""
        return len(self.segment) - self.next

    def verdict(self, condition: str) -> str | None:
        """A dependency on the whole pool: '' once every item has done what
        `condition` asks, None while undecided, else why it never will. The
        instances that run are judged by the gate itself; this speaks for
        those that wait and those in the ledger."""
        bad = self.ledger.first_bad
        if bad is not None and (condition == "succeeded" or bad.state is State.SKIPPED):
            return f"dependency {bad.name} {bad.status_text}, not {condition}"
        if self.queued:
            return None
        return ""

    async def run(self) -> None:
        """Admit the items one by one, as the pool gives slots, until they
        are all started or a stop is asked for."""
        host = self._host
        # Made in order, each once, as the segment iterates them: no bounds,
        # length or index to work out again for each of a million items.
        jobs = iter(self.segment)
        job = next(jobs, None)
        if job is None:
            return
        blocked = await host.dependencies_of(job)
        if blocked:
            self.ledger.unrun_reason = blocked
            return
        admit, start = host.admit, host.start_admitted
        if host.stopping:
            return
        while job is not None:
            ticket = await admit(job)
            if host.stopping:
                # A stop came while it waited (the only place one can come
                # in this loop): nothing starts after it.
                host.release(ticket)
                return
            self.next += 1
            start(job, ticket)
            job = next(jobs, None)
