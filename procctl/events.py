"""Typed events: the only thing the engine and the UI share.

The engine publishes on a `Bus`; each subscriber is a plain callable that must
return at once. A subscriber that renders slowly buffers through `EventQueue`,
which is bounded and drops the oldest output first (counting what it dropped),
so the engine never waits on a UI. Their JSON records are `records`'.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import Callable

from procctl.states import State



@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base: every event names the process and the instance it concerns."""

    name: str
    """The process name from the manifest (`web`)."""
    instance: str
    """The instance name (`web.2`, `thumb[7]`, or `web` when there is one)."""
    ts: float = dataclasses.field(default_factory=time.time, kw_only=True)
    """Wall-clock time of the event, seconds since the epoch."""

    kind = "event"


@dataclasses.dataclass(frozen=True, slots=True)
class Queued(Event):
    """The instance waits for its dependencies or a pool slot."""

    kind = "queued"


@dataclasses.dataclass(frozen=True, slots=True)
class Started(Event):
    pid: int
    attempt: int = 1
    """1 for the first run, 2 after the first restart, and so on."""
    kind = "started"


@dataclasses.dataclass(frozen=True, slots=True)
class Output(Event):
    """Complete lines a child wrote, as `engine.lines` cut and decoded them:
    one or more, each ending in a newline. (The log file has the bytes.)"""

    stream: str
    """'stdout' or 'stderr'."""
    text: str
    """Whole lines, each ending in '\\n'; a line holds no other '\\n'."""
    kind = "output"

    def lines(self) -> list[str]:
        """Its lines, without their newlines: what every sink shows."""
        return self.text.split("\n")[:-1]


@dataclasses.dataclass(frozen=True, slots=True)
class Ready(Event):
    probe: str
    """What passed: 'log', 'tcp', 'http', 'exec' or 'none'."""
    kind = "ready"


@dataclasses.dataclass(frozen=True, slots=True)
class Exited(Event):
    status: State
    """How this run ended (`outcome.judge`): exited, failed, killed, timed
    out, limit exceeded, or stopped (on request)."""
    code: int | None
    """Exit code, or None when a signal ended it."""
    signal: int | None
    """The signal that ended it, or None."""
    duration_s: float
    kind = "exited"


@dataclasses.dataclass(frozen=True, slots=True)
class StateChanged(Event):
    state: State
    reason: str = ""
    kind = "state"


@dataclasses.dataclass(frozen=True, slots=True)
class Restarting(Event):
    attempt: int
    delay_s: float
    reason: str = ""
    """Why the run before ended, when it failed ("watchdog missed: ...")."""
    kind = "restarting"


@dataclasses.dataclass(frozen=True, slots=True)
class GaveUp(Event):
    """Its restart policy would run it again, but it has used its budget:
    `max_restarts` restarts in a row, none after a run of `min_uptime`."""

    restarts: int
    """The restarts of the streak it gave up on."""
    within_s: float
    """From the end of the run that took the first of them to the end of the last run."""
    why: str
    """How the last run ended ("failed 1", "not alive: …")."""
    kind = "gave_up"


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped(Event):
    why: str
    kind = "skipped"


@dataclasses.dataclass(frozen=True, slots=True)
class LimitExceeded(Event):
    limit: str
    """The manifest key: 'memory', 'cpu_time', 'fsize'..."""
    value: float
    """What was measured (bytes, seconds); 0 when the kernel enforced it."""
    maximum: float
    """The limit in force, in the same unit."""
    action: str
    """What follows: 'kill' or 'restart'."""
    mechanism: str = "rlimit"
    """What caught it: 'rlimit', 'watchdog', 'cgroup v1' or 'cgroup v2'."""
    kind = "limit_exceeded"


@dataclasses.dataclass(frozen=True, slots=True)
class Paused(Event):
    kind = "paused"


@dataclasses.dataclass(frozen=True, slots=True)
class Resumed(Event):
    kind = "resumed"


@dataclasses.dataclass(frozen=True, slots=True)
class Notice(Event):
    """Something the supervisor wants the user to know (a probe timed out,
    a stop was cut short with SIGKILL)."""

    message: str
    level: str = "info"
    kind = "notice"


@dataclasses.dataclass(frozen=True, slots=True)
class Requested(Event):
    """A control request changed what runs: who asked, and what. Its name
    and instance are those the request named (`procctl` for `--all` or the
    whole run), so that every view — also one in another terminal — can say
    "web scaled to 3 (from another terminal)"."""

    verb: str
    """The control verb: pause, resume, kill, restart, start, scale, limits, shutdown (a send is told by its `Message` events)."""
    detail: str
    """What it did, in a few words ("scaled to 3", "signal SIGHUP")."""
    client_pid: int | None = None
    """The pid of the process that asked (None: the supervisor itself)."""
    kind = "request"


@dataclasses.dataclass(frozen=True, slots=True)
class Reloaded(Event):
    """A reload (`procctl reload`, or SIGHUP to a detached supervisor)
    changed this process. Its name and instance are the process's."""

    action: str
    """added, removed, restarted, scaled, updated (a change that restarts nothing)."""
    changes: list[str]
    """The manifest keys whose change it was (`cmd`, `env`, `replicas`…)."""
    detail: str
    """What it did, in a few words (`restarted (cmd changed)`, `scaled; started web.3`)."""
    kind = "reload"


@dataclasses.dataclass(frozen=True, slots=True)
class Message(Event):
    """A line `procctl send` wrote to the instance's stdin."""

    text: str
    sender: str | None = None
    """The instance whose process sent it, as the kernel's credentials of the
    connection tell; None when it came from outside every instance (an
    operator's terminal). Written `from` in the records."""
    kind = "message"


@dataclasses.dataclass(frozen=True, slots=True)
class StatusMessage(Event):
    """The text a process reported with STATUS= on its notification socket."""

    text: str
    kind = "status_message"


@dataclasses.dataclass(frozen=True, slots=True)
class Sample(Event):
    """Resource use of an instance's whole process tree (the process and every
    descendant), sampled every `metrics_interval`, and once more when a run
    ends (`final`)."""

    pid: int
    """Pid of the instance's process (the root of the tree)."""
    cpu_percent: float
    """CPU use since the previous sample; 100 = one core busy."""
    cpu_time_s: float
    """User + system CPU seconds of this run so far, descendants included
    (also those already ended and reaped within the tree)."""
    rss_bytes: int
    """Resident memory, summed over the tree. For an instance that uses
    shared regions, its proportional set size (PSS): a page it shares with
    others counts as its share, so that a region counts once in all."""
    peak_rss_bytes: int
    """Highest `rss_bytes` of this run so far."""
    read_bytes: int | None
    """Bytes read from storage by the tree; None when the kernel denies it."""
    write_bytes: int | None
    threads: int
    """Threads, summed over the tree."""
    children: int
    """Descendants of the root process now alive."""
    final: bool = False
    """True for the figures of a run that just ended (before its `Exited`)."""
    kind = "metrics"


@dataclasses.dataclass(frozen=True, slots=True)
class PoolSample(Event):
    """The pool's figures, published when its effective size moves (`-j
    auto`) and once at the start of a run. Its name and instance are "pool"."""

    pool_size: int
    """Slots in force now."""
    pool_cap: int
    """The hard cap (`-j N`); equal to `pool_size` without auto."""
    auto: bool
    running: int
    queued: int
    kind = "metrics"


@dataclasses.dataclass(frozen=True, slots=True)
class RegionSample(Event):
    """A shared memory region's figures, counted once whoever maps it. Its
    name is "shared", its instance the region's name. Published at the start
    of a run and when its resident size moves."""

    size_bytes: int
    resident_bytes: int
    """Memory the region holds now (pages written at least once)."""
    kind = "metrics"


Subscriber = Callable[[Event], None]


class Flow:
    """Back-pressure from slow sinks to the readers of children's output.

    A sink whose buffer has grown past its bound holds the flow; while it is
    held, the engine stops reading children's pipes (a child then waits on
    its own writes, as on a slow terminal) and reads on once every holder
    has released it. Nothing is dropped, and the event loop never waits."""

    def __init__(self) -> None:
        self._holders = 0
        self._waiting: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        return self._holders > 0

    def hold(self) -> None:
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if not self._holders:
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback()

    def when_released(self, callback: Callable[[], None]) -> None:
        if self._holders:
            self._waiting.append(callback)
        else:
            callback()


class Bus:
    """Fan-out of events to subscribers, synchronously and in order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.flow = Flow()
        """Held by a sink that cannot keep up with the children's output."""

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers:
            subscriber(event)


class EventQueue:
    """A bounded buffer for a subscriber that consumes at its own pace.

    When full, the oldest `Output` event is dropped and counted per instance;
    other events are never dropped (they are few and carry state).
    """

    def __init__(self, max_output_events: int = 10_000, max_output_chars: int = 16 << 20) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._output_count = 0
        self._max_output = max_output_events
        self._output_chars = 0
        self._max_chars = max_output_chars
        """What the output events may hold in all (a flooding child's are
        up to 256 KiB each)."""
        self.dropped: collections.Counter[str] = collections.Counter()
        self._waiter: asyncio.Event | None = None

    def __call__(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, Output):
            self._output_count += 1
            self._output_chars += len(event.text)
            while self._output_count > 1 and (self._output_count > self._max_output or self._output_chars > self._max_chars):
                self._drop_oldest_output()
        if self._waiter is not None:
            self._waiter.set()

    def _drop_oldest_output(self) -> None:
        for i, old in enumerate(self._events):
            if isinstance(old, Output):
                del self._events[i]
                self._output_count -= 1
                self._output_chars -= len(old.text)
                self.dropped[old.instance] += old.text.count("\n")
                return

    def drain(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        self._output_count = self._output_chars = 0
        return events

    async def wait(self) -> None:
        if self._events:
            return
        self._waiter = asyncio.Event()
        try:
            await self._waiter.wait()
        finally:
            self._waiter = None
