"""Reading a run's logs back: each instance's lines (across its rotated
files), when each arrived, and procctl's own events of the run in their
place among them. What `procctl logs` prints; the layout is `logindex`'s.
The last lines of one log (`tail_of`, `read_log_tail`) are read here too.

Everything is opened through the state directory (`StateDir`), never
through a link. Never prints.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
from collections.abc import Container, Iterable, Iterator
from pathlib import Path

from procctl.engine import logindex
from procctl.engine.logindex import Times
from procctl.engine.safeopen import open_in
from procctl.engine.store import StateDir

MAX_EVENT_LINE = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of an instance's output, or one of procctl's events."""

    ts: float | None
    """When it happened (for a line: when the piece it is in arrived)."""
    instance: str
    position: int
    """Where in the instance's output (bytes before it)."""
    line: bytes = b""
    """The line as written, with its newline (the last may have none)."""
    event: dict[str, object] | None = None
    """The event's record (docs/events.md), for an event."""


def instance_name(log_name: str, each: Iterable[str] = ()) -> str:
    """`web.log` → `web`, `web.2.log` → `web.2`, `thumb.7.log` → `thumb[7]`
    (`each`: the processes with items)."""
    stem = log_name.removesuffix(".log")
    process, _, number = stem.partition(".")
    return f"{process}[{number}]" if number and process in set(each) else stem


def log_name_of(instance: str) -> str:
    """`web` → `web.log`, `web.2` → `web.2.log`, `thumb[7]` → `thumb.7.log`
    (the inverse of `instance_name`)."""
    process, bracket, item = instance.partition("[")
    return f"{process}.{item.removesuffix(']')}.log" if bracket else f"{instance}.log"


def process_of(instance: str) -> str:
    return instance.split("[", 1)[0].split(".", 1)[0]


class RunLogs:
    """One run's logs, as files to read (the current run's, or a past one's)."""

    def __init__(self, state: StateDir, run: str | None = None) -> None:
        self.state = state
        self.run = run
        self.fd = state.logs_of(run)
        """The run's checked directory; None when there are no logs."""
        self.where = state.logs / logindex.PAST / run if run is not None else state.logs
        """That directory, as messages name it."""

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd)) if self.fd is not None else []

    def log_names(self) -> list[str]:
        """Each instance's current log file (`web.log`, `web.2.log`)."""
        return [name for name in self.names() if logindex.is_log(name)]

    def open(self, name: str) -> int | None:
        """A file of the run opened for reading (no link followed); None if gone."""
        if self.fd is None:
            return None
        try:
            return open_in(self.fd, name, os.O_RDONLY, shown=self.where / name)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------ lines

    def times(self, file: str) -> Times:
        fd = self.open(logindex.index_of(file))
        if fd is None:
            return Times([])
        try:
            return Times(logindex.read_marks(fd))
        finally:
            os.close(fd)

    def lines(self, log_name: str, instance: str, *, last: int | None = None, since: float | None = None) -> list[Entry]:
        """The instance's lines, oldest first: all, the `last` N, or those
        that arrived at `since` or later (both: the last N of those)."""
        files = logindex.pieces(self.names(), log_name)
        found: list[Entry] = []
        base = 0
        bases = []
        for file in files:
            times = self.times(file)
            start = times.first_position
            bases.append((file, times, start if start is not None else base))
            fd = self.open(file)
            size = os.fstat(fd).st_size if fd is not None else 0
            if fd is not None:
                os.close(fd)
            base = bases[-1][2] + size
        for file, times, file_base in reversed(bases):
            if last is not None and len(found) >= last:
                break
            fd = self.open(file)
            if fd is None:
                continue
            try:
                if last is not None and since is None:
                    data, end = tail_of(fd, last - len(found))
                    offset = end - len(data)
                else:
                    offset = 0
                    if since is not None and times:
                        position = times.position_since(since)
                        if position is None:
                            # Nothing in this file arrived since then but
                            # what followed its last mark.
                            last_ts = times.at(2**63)
                            if last_ts is not None and last_ts < since:
                                break
                        else:
                            offset = max(position - file_base, 0)
                    end = os.fstat(fd).st_size
                    data = os.pread(fd, end - offset, offset)
            finally:
                os.close(fd)
            entries = list(_split(data, instance, file_base + offset, times))
            if since is not None:
                entries = [entry for entry in entries if entry.ts is None or entry.ts >= since]
            found = entries + found
            if since is not None and offset > 0:
                break
        if last is not None:
            found = found[-last:] if last > 0 else []
        return found

    # ------------------------------------------------------------ events

    def events(self) -> list[dict[str, object]]:
        """procctl's events of the run, oldest first (a torn last record is left out)."""
        records = []
        for file in logindex.pieces(self.names(), logindex.EVENTS):
            fd = self.open(file)
            if fd is None:
                continue
            try:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
            finally:
                os.close(fd)
            records.extend(parse_events(data)[0])
        return records


def parse_events(data: bytes) -> tuple[list[dict[str, object]], int]:
    """The whole records in `data` and how many bytes they took (a last
    record without its newline waits for the rest)."""
    records = []
    end = data.rfind(b"\n") + 1
    for raw in data[:end].splitlines():
        if len(raw) > MAX_EVENT_LINE:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("instance"), str):
            records.append(record)
    return records, end


def _split(data: bytes, instance: str, position: int, times: Times) -> Iterator[Entry]:
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        at = position + start
        yield Entry(times.at(at), instance, at, line=data[start:end])
        start = end


def event_entries(records: Iterable[dict[str, object]], instances: Container[str], *, since: float | None = None) -> dict[str, list[Entry]]:
    """The events of `instances` (and of the run as a whole, under
    `procctl`), by instance."""
    found: dict[str, list[Entry]] = {}
    for record in records:
        instance = str(record["instance"])
        if instance not in instances and instance != "procctl":
            continue
        ts = record.get("ts")
        ts = float(ts) if isinstance(ts, (int, float)) else None
        if since is not None and ts is not None and ts < since:
            continue
        at = record.get("at")
        position = at if isinstance(at, int) else -1
        found.setdefault(instance, []).append(Entry(ts, instance, position, event=record))
    return found


def in_place(lines: list[Entry], events: list[Entry]) -> list[Entry]:
    """One instance's lines and events in the order they happened: an event
    after every line its log held when it happened, before the rest. Times
    never go back (a line is at least as late as an event before it)."""
    merged = sorted([*((entry.position, 1, i, entry) for i, entry in enumerate(lines)), *((entry.position, 0, i, entry) for i, entry in enumerate(events))],
                    key=lambda item: (item[0], item[1], item[2]))  # fmt: skip
    out = []
    latest = float("-inf")
    for _, _, _, entry in merged:
        if entry.ts is not None:
            if entry.ts < latest:
                entry = dataclasses.replace(entry, ts=latest)
            latest = entry.ts
        out.append(entry)
    return out


def interleave(streams: Iterable[list[Entry]]) -> list[Entry]:
    """Several instances' entries merged by time (each already in order)."""
    return list(heapq.merge(*streams, key=lambda entry: entry.ts if entry.ts is not None else float("-inf")))


def trim_events(events: list[Entry], lines: list[Entry], *, limited: bool) -> list[Entry]:
    """The events that go with the lines shown: all of them, unless only
    the last lines are shown (`limited`): then those from the first of them on."""
    if not limited or not lines:
        return events
    first = lines[0].position
    return [event for event in events if event.position >= first]


def supervisor_alive(state: StateDir, run_record: dict[str, object] | None) -> bool:
    """Whether the supervisor of the current run still runs (its pid is a
    live process, not a zombie, and `run.json` still names its run)."""
    if not run_record:
        return False
    now = state.run_record()
    if not now or now.get("run") != run_record.get("run"):
        return False
    pid = run_record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def tail_of(fd: int, lines: int, *, max_bytes: int | None = None) -> tuple[bytes, int]:
    """The last `lines` lines of an open file and the offset its end is at.
    With `max_bytes`, never more than that many bytes (the end of a huge line)."""
    end = os.fstat(fd).st_size
    if lines <= 0:
        return b"", end
    block, data, pos = 65536, b"", end
    while pos > 0 and data.count(b"\n") <= lines and (max_bytes is None or len(data) < max_bytes):
        step = min(block, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
    kept = b"".join(data.splitlines(keepends=True)[-lines:])
    return (kept[-max_bytes:] if max_bytes is not None else kept), end


def read_log_tail(log_path: Path, lines: int, *, max_bytes: int | None = None) -> bytes:
    """The end of an instance's log, given its path (`…/.procctl/logs/NAME`),
    read without following links; empty when it has no file (it wrote
    nothing). Raises OSError or StateDirError."""
    try:
        fd = StateDir(log_path.parent.parent).open(f"logs/{log_path.name}", os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return tail_of(fd, lines, max_bytes=max_bytes)[0]
    finally:
        os.close(fd)
