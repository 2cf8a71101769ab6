"""Typed events: the only thing the engine and the UI share.

The engine publishes them on a `Bus` (`procctl.bus`, with the buffer and the
back-pressure of slow subscribers); their JSON records are `records`'.
"""

from __future__ import annotations

import time

from procctl.states import State


class FrozenEventError(AttributeError):
    """An event's fields cannot change once it is made."""


_set = object.__setattr__


def _base(event: Event, name: str, instance: str, ts: float | None) -> None:
    _set(event, "name", name)
    _set(event, "instance", instance)
    _set(event, "ts", time.time() if ts is None else ts)


class Event:
    """Base: every event names the process and the instance it concerns.

    Events are immutable and compare, hash and print by their fields, in the
    order of `fields` (the base's first, then the kind's own). They are plain
    slotted classes with their `__init__` written out, not dataclasses: the
    code a dataclass makes is compiled at every start, ~8 ms of `procctl
    run`'s for these 21 kinds."""

    __slots__ = ("name", "instance", "ts")
    fields: tuple[str, ...] = __slots__
    """Every field's name, in order; each subclass's own are added to it."""

    name: str
    """The process name from the manifest (`web`)."""
    instance: str
    """The instance name (`web.2`, `thumb[7]`, or `web` when there is one)."""
    ts: float
    """Wall-clock time of the event, seconds since the epoch (now, unless given, by keyword only)."""

    kind = "event"

    def __init__(self, name: str, instance: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)

    def __init_subclass__(cls) -> None:
        cls.fields = cls.__mro__[1].fields + cls.__dict__.get("__slots__", ())

    def values(self) -> tuple[object, ...]:
        """Its fields' values, in the order of `fields`."""
        return tuple(getattr(self, field) for field in self.fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.values() == other.values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{field}={getattr(self, field)!r}' for field in self.fields)})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenEventError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenEventError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return _remake, (type(self), self.values())


def _remake(cls: type[Event], values: tuple[object, ...]) -> Event:
    """An event from `Event.__reduce__` (pickle, copy)."""
    event = object.__new__(cls)
    for field, value in zip(cls.fields, values):
        _set(event, field, value)
    return event


class Queued(Event):
    """The instance waits for its dependencies or a pool slot."""

    __slots__ = ()

    kind = "queued"

    def __init__(self, name: str, instance: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)


class Started(Event):
    __slots__ = ("pid", "attempt")
    pid: int
    attempt: int
    """1 for the first run, 2 after the first restart, and so on."""
    kind = "started"

    def __init__(self, name: str, instance: str, pid: int, attempt: int = 1, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "pid", pid)
        _set(self, "attempt", attempt)


class Output(Event):
    """Complete lines a child wrote, as `engine.lines` cut and decoded them:
    one or more, each ending in a newline. (The log file has the bytes.)"""

    __slots__ = ("stream", "text")

    stream: str
    """'stdout' or 'stderr'."""
    text: str
    """Whole lines, each ending in '\\n'; a line holds no other '\\n'."""
    kind = "output"

    def lines(self) -> list[str]:
        """Its lines, without their newlines: what every sink shows."""
        return self.text.split("\n")[:-1]

    def __init__(self, name: str, instance: str, stream: str, text: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "stream", stream)
        _set(self, "text", text)


class Ready(Event):
    __slots__ = ("probe",)
    probe: str
    """What passed: 'log', 'tcp', 'http', 'exec' or 'none'."""
    kind = "ready"

    def __init__(self, name: str, instance: str, probe: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "probe", probe)


class Exited(Event):
    __slots__ = ("status", "code", "signal", "duration_s")
    status: State
    """How this run ended (`outcome.judge`): exited, failed, killed, timed
    out, limit exceeded, or stopped (on request)."""
    code: int | None
    """Exit code, or None when a signal ended it."""
    signal: int | None
    """The signal that ended it, or None."""
    duration_s: float
    kind = "exited"

    def __init__(self, name: str, instance: str, status: State, code: int | None, signal: int | None, duration_s: float, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "status", status)
        _set(self, "code", code)
        _set(self, "signal", signal)
        _set(self, "duration_s", duration_s)


class StateChanged(Event):
    __slots__ = ("state", "reason")
    state: State
    reason: str
    kind = "state"

    def __init__(self, name: str, instance: str, state: State, reason: str = "", *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "state", state)
        _set(self, "reason", reason)


class Restarting(Event):
    __slots__ = ("attempt", "delay_s", "reason")
    attempt: int
    delay_s: float
    reason: str
    """Why the run before ended, when it failed ("watchdog missed: ...")."""
    kind = "restarting"

    def __init__(self, name: str, instance: str, attempt: int, delay_s: float, reason: str = "", *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "attempt", attempt)
        _set(self, "delay_s", delay_s)
        _set(self, "reason", reason)


class GaveUp(Event):
    """Its restart policy would run it again, but it has used its budget:
    `max_restarts` restarts in a row, none after a run of `min_uptime`."""

    __slots__ = ("restarts", "within_s", "why")

    restarts: int
    """The restarts of the streak it gave up on."""
    within_s: float
    """From the end of the run that took the first of them to the end of the last run."""
    why: str
    """How the last run ended ("failed 1", "not alive: …")."""
    kind = "gave_up"

    def __init__(self, name: str, instance: str, restarts: int, within_s: float, why: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "restarts", restarts)
        _set(self, "within_s", within_s)
        _set(self, "why", why)


class Skipped(Event):
    __slots__ = ("why",)
    why: str
    kind = "skipped"

    def __init__(self, name: str, instance: str, why: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "why", why)


class LimitExceeded(Event):
    __slots__ = ("limit", "value", "maximum", "action", "mechanism")
    limit: str
    """The manifest key: 'memory', 'cpu_time', 'fsize'..."""
    value: float
    """What was measured (bytes, seconds); 0 when the kernel enforced it."""
    maximum: float
    """The limit in force, in the same unit."""
    action: str
    """What follows: 'kill' or 'restart'."""
    mechanism: str
    """What caught it: 'rlimit', 'watchdog', 'cgroup v1' or 'cgroup v2'."""
    kind = "limit_exceeded"

    def __init__(self, name: str, instance: str, limit: str, value: float, maximum: float, action: str, mechanism: str = "rlimit", *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "limit", limit)
        _set(self, "value", value)
        _set(self, "maximum", maximum)
        _set(self, "action", action)
        _set(self, "mechanism", mechanism)


class Paused(Event):
    __slots__ = ()
    kind = "paused"

    def __init__(self, name: str, instance: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)


class Resumed(Event):
    __slots__ = ()
    kind = "resumed"

    def __init__(self, name: str, instance: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)


class Notice(Event):
    """Something the supervisor wants the user to know (a probe timed out,
    a stop was cut short with SIGKILL)."""

    __slots__ = ("message", "level")

    message: str
    level: str
    kind = "notice"

    def __init__(self, name: str, instance: str, message: str, level: str = "info", *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "message", message)
        _set(self, "level", level)


class Requested(Event):
    """A control request changed what runs: who asked, and what. Its name
    and instance are those the request named (`procctl` for `--all` or the
    whole run), so that every view — also one in another terminal — can say
    "web scaled to 3 (from another terminal)"."""

    __slots__ = ("verb", "detail", "client_pid")

    verb: str
    """The control verb: pause, resume, kill, restart, start, scale, limits, shutdown (a send is told by its `Message` events)."""
    detail: str
    """What it did, in a few words ("scaled to 3", "signal SIGHUP")."""
    client_pid: int | None
    """The pid of the process that asked (None: the supervisor itself)."""
    kind = "request"

    def __init__(self, name: str, instance: str, verb: str, detail: str, client_pid: int | None = None, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "verb", verb)
        _set(self, "detail", detail)
        _set(self, "client_pid", client_pid)


class Reloaded(Event):
    """A reload (`procctl reload`, or SIGHUP to a detached supervisor)
    changed this process. Its name and instance are the process's."""

    __slots__ = ("action", "changes", "detail")

    action: str
    """added, removed, restarted, scaled, updated (a change that restarts nothing)."""
    changes: list[str]
    """The manifest keys whose change it was (`cmd`, `env`, `replicas`…)."""
    detail: str
    """What it did, in a few words (`restarted (cmd changed)`, `scaled; started web.3`)."""
    kind = "reload"

    def __init__(self, name: str, instance: str, action: str, changes: list[str], detail: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "action", action)
        _set(self, "changes", changes)
        _set(self, "detail", detail)


class Message(Event):
    """A line `procctl send` wrote to the instance's stdin."""

    __slots__ = ("text", "sender")

    text: str
    sender: str | None
    """The instance whose process sent it, as the kernel's credentials of the
    connection tell; None when it came from outside every instance (an
    operator's terminal). Written `from` in the records."""
    kind = "message"

    def __init__(self, name: str, instance: str, text: str, sender: str | None = None, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "text", text)
        _set(self, "sender", sender)


class StatusMessage(Event):
    """The text a process reported with STATUS= on its notification socket."""

    __slots__ = ("text",)

    text: str
    kind = "status_message"

    def __init__(self, name: str, instance: str, text: str, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "text", text)


class Sample(Event):
    """Resource use of an instance's whole process tree (the process and every
    descendant), sampled every `metrics_interval`, and once more when a run
    ends (`final`)."""

    __slots__ = ("pid", "cpu_percent", "cpu_time_s", "rss_bytes", "peak_rss_bytes", "read_bytes", "write_bytes", "threads", "children", "final")

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
    final: bool
    """True for the figures of a run that just ended (before its `Exited`)."""
    kind = "metrics"

    def __init__(self, name: str, instance: str, pid: int, cpu_percent: float, cpu_time_s: float, rss_bytes: int, peak_rss_bytes: int, read_bytes: int | None, write_bytes: int | None, threads: int, children: int, final: bool = False, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "pid", pid)
        _set(self, "cpu_percent", cpu_percent)
        _set(self, "cpu_time_s", cpu_time_s)
        _set(self, "rss_bytes", rss_bytes)
        _set(self, "peak_rss_bytes", peak_rss_bytes)
        _set(self, "read_bytes", read_bytes)
        _set(self, "write_bytes", write_bytes)
        _set(self, "threads", threads)
        _set(self, "children", children)
        _set(self, "final", final)


class PoolSample(Event):
    """The pool's figures, published when its effective size moves (`-j
    auto`) and once at the start of a run. Its name and instance are "pool"."""

    __slots__ = ("pool_size", "pool_cap", "auto", "running", "queued")

    pool_size: int
    """Slots in force now."""
    pool_cap: int
    """The hard cap (`-j N`); equal to `pool_size` without auto."""
    auto: bool
    running: int
    queued: int
    kind = "metrics"

    def __init__(self, name: str, instance: str, pool_size: int, pool_cap: int, auto: bool, running: int, queued: int, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "pool_size", pool_size)
        _set(self, "pool_cap", pool_cap)
        _set(self, "auto", auto)
        _set(self, "running", running)
        _set(self, "queued", queued)


class RegionSample(Event):
    """A shared memory region's figures, counted once whoever maps it. Its
    name is "shared", its instance the region's name. Published at the start
    of a run and when its resident size moves."""

    __slots__ = ("size_bytes", "resident_bytes")

    size_bytes: int
    resident_bytes: int
    """Memory the region holds now (pages written at least once)."""
    kind = "metrics"

    def __init__(self, name: str, instance: str, size_bytes: int, resident_bytes: int, *, ts: float | None = None) -> None:
        _base(self, name, instance, ts)
        _set(self, "size_bytes", size_bytes)
        _set(self, "resident_bytes", resident_bytes)
