"""What the live view knows, folded from the engine's events: one `Row` per
instance, the merged output tail, the pool's figures. Pure: no I/O, no
drawing, no clock of its own."""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable

from procctl import events
from procctl.states import Ended, State
from procctl.ui.plain import describe

HISTORY = 12
"""Samples kept per instance for the sparklines."""
TAIL_KEEP = 500
"""Lines of merged output kept for the tail."""
LINE_KEEP = 1000
"""Characters kept of a line (the log has the rest)."""

ACTIVE = {State.STARTING, State.RUNNING, State.READY, State.STOPPING, State.PAUSED}
QUEUED = {State.PENDING, State.BACKOFF}


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """What the view knows of an instance before any event: from the plan."""

    name: str
    process: str
    log_path: str = ""
    each: bool = False
    """One job of an `each` process (counted by the progress bar)."""
    pooled: bool = False
    """It takes a pool slot (a job), as opposed to a service."""


class Row(Ended):
    """One instance as the view shows it."""

    __slots__ = (
        "name", "process", "order", "log_path", "each", "pooled", "state", "pid", "started_ts", "last_duration_s",
        "restarts", "exit_code", "signal", "cpu_percent", "rss_bytes", "read_bytes", "write_bytes",
        "threads", "children", "cpu_history", "rss_history", "last_line", "reason", "reported",
    )

    def __init__(self, info: InstanceInfo, order: int) -> None:
        self.name = info.name
        self.process = info.process
        self.order = order
        self.log_path = info.log_path
        self.each = info.each
        self.pooled = info.pooled
        self.state = State.PENDING
        self.pid: int | None = None
        self.started_ts: float | None = None
        self.last_duration_s: float | None = None
        self.restarts = 0
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.cpu_percent: float | None = None
        self.rss_bytes: int | None = None
        self.read_bytes: int | None = None
        self.write_bytes: int | None = None
        self.threads = 0
        self.children = 0
        self.cpu_history: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.rss_history: collections.deque[float] = collections.deque(maxlen=HISTORY)
        self.last_line = ""
        self.reason = ""
        self.reported = ""
        """What the process said of itself last (STATUS= on its notification socket)."""

    def interest(self) -> tuple[int, float]:
        """Sort key: failing first, then restarting, then the busiest running,
        then what waits, then what ended well."""
        state = self.state
        if state.failure:
            return (0, self.order)
        if state is State.BACKOFF:
            return (1, self.order)
        if state in ACTIVE:
            return (2 if self.restarts == 0 else 1, -(self.cpu_percent or 0.0))
        if state is State.PENDING:
            return (3, self.order)
        return (4, self.order)


class LiveModel:
    """Everything the view draws, folded from events. Pure: no I/O, no clock
    of its own (the clock is passed in)."""

    def __init__(self, instances: Iterable[InstanceInfo], *, max_parallel: int, clock: Callable[[], float] = time.time) -> None:
        self.max_parallel = max_parallel
        self.pool_cap: int | None = None
        """The cap of an adaptive (`auto`) pool; None for a fixed one."""
        self.clock = clock
        self.began = clock()
        self.rows: dict[str, Row] = {}
        for info in instances:
            self._add(info)
        self.tail: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=TAIL_KEEP)
        """(instance, process, text) of the latest lines; instance 'procctl' for notes."""
        self.skipped: collections.Counter[str] = collections.Counter()
        self.stopping = ""
        self.regions: dict[str, tuple[int, int]] = {}
        """Shared regions: name → (size, resident bytes), counted once."""

    def _add(self, info: InstanceInfo) -> Row:
        row = Row(info, len(self.rows))
        self.rows[info.name] = row
        return row

    def _row(self, event: events.Event) -> Row:
        row = self.rows.get(event.instance)
        if row is None:
            # An instance added while running (scale up).
            row = self._add(InstanceInfo(event.instance, event.name))
        return row

    def note_skipped(self, dropped: collections.Counter[str]) -> None:
        """Output the queue dropped since the last call: one note per instance."""
        for instance, total in dropped.items():
            new = total - self.skipped[instance]
            if new > 0:
                self.skipped[instance] = total
                row = self.rows.get(instance)
                where = row.log_path if row and row.log_path else f"logs/{instance}.log"
                self.tail.append(("procctl", "procctl", f"{new:,} lines of {instance} skipped — see {where}"))

    def fold(self, batch: Iterable[events.Event]) -> None:
        for event in batch:
            if isinstance(event, events.Output):
                self._output(event)
            elif isinstance(event, events.Sample):
                self._sample(event)
            elif isinstance(event, events.StateChanged):
                row = self._row(event)
                row.state = event.state
                if event.reason:
                    row.reason = event.reason
            elif isinstance(event, events.Started):
                row = self._row(event)
                row.reported = ""
                row.pid = event.pid
                row.started_ts = event.ts
                row.restarts = max(row.restarts, event.attempt - 1)
                row.exit_code = row.signal = None
                row.cpu_percent = row.rss_bytes = None
            elif isinstance(event, events.Exited):
                row = self._row(event)
                row.exit_code = event.code
                row.signal = event.signal
                row.last_duration_s = event.duration_s
                row.started_ts = None
                row.cpu_percent = row.rss_bytes = None
                if event.status is not State.EXITED:
                    self._note(event)
            elif isinstance(event, events.Restarting):
                self._row(event).restarts = event.attempt
                self._note(event)
            elif isinstance(event, events.Queued):
                self._row(event)
            elif isinstance(event, events.StatusMessage):
                self._row(event).reported = event.text
                self._note(event)
            elif isinstance(event, (events.Message, events.Reloaded)):
                self._note(event)
            elif isinstance(event, events.RegionSample):
                self.regions[event.instance] = (event.size_bytes, event.resident_bytes)
            elif isinstance(event, events.PoolSample):
                self.max_parallel = event.pool_size
                self.pool_cap = event.pool_cap if event.auto else None
            elif isinstance(event, (events.Notice, events.Skipped, events.LimitExceeded, events.GaveUp)):
                if isinstance(event, events.Notice) and event.instance == "procctl" and event.message.startswith("stopping"):
                    self.stopping = event.message
                self._note(event)

    def _note(self, event: events.Event) -> None:
        text = describe(event)
        if text is not None:
            self.tail.append(("procctl", "procctl", text))

    def _output(self, event: events.Output) -> None:
        row = self._row(event)
        text = event.text
        if len(text) > 16384:
            # Only the last lines can reach the screen: the same lines as
            # `event.lines()` gives, from a line boundary near the end.
            text = text[-16384:]
            text = text[text.find("\n") + 1 :]
        lines = text.split("\n")[:-1]
        if not lines:
            return
        row.last_line = lines[-1][:LINE_KEEP]
        tail = self.tail
        for line in lines[-TAIL_KEEP:]:
            tail.append((event.instance, event.name, line[:LINE_KEEP]))

    def _sample(self, event: events.Sample) -> None:
        row = self._row(event)
        if event.final:
            return
        row.cpu_percent = event.cpu_percent
        row.rss_bytes = event.rss_bytes
        row.read_bytes = event.read_bytes
        row.write_bytes = event.write_bytes
        row.threads = event.threads
        row.children = event.children
        row.cpu_history.append(event.cpu_percent)
        row.rss_history.append(float(event.rss_bytes))

    # ------------------------------------------------------------ figures

    def counts(self) -> dict[str, int]:
        running = queued = done = failed = pooled = 0
        for row in self.rows.values():
            state = row.state
            if state in ACTIVE:
                running += 1
                pooled += row.pooled
            elif state in QUEUED:
                queued += 1
            elif state.failure:
                failed += 1
            else:
                done += 1
        return {"running": running, "queued": queued, "done": done, "failed": failed, "pooled": pooled}

    def each_progress(self) -> dict[str, tuple[int, int]]:
        """(ended, total) per `each` process."""
        found: dict[str, list[int]] = {}
        for row in self.rows.values():
            if row.each:
                entry = found.setdefault(row.process, [0, 0])
                entry[1] += 1
                if row.state.final:
                    entry[0] += 1
        return {process: (ended, total) for process, (ended, total) in found.items()}


# ------------------------------------------------------------------ render
