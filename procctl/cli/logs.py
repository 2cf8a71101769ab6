"""`procctl logs`: the instances' output, with procctl's own events in their
place, from the current (or last) run's logs; `-f` follows them live until
the supervisor goes away.

Works with or without a running supervisor: the logs are plain files
(engine/logindex.py says how they lie, engine/logread.py reads them).
"""

from __future__ import annotations

import datetime
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, Optional

import typer

from procctl.cli.app import FileOption, app, complete_name, load_manifest_option
from procctl.errors import UsageError

if TYPE_CHECKING:
    from procctl.engine.logread import Entry, RunLogs
    from procctl.engine.store import StateDir

DEFAULT_LINES = 100
FOLLOW_POLL_S = 0.1


@app.command()
def logs(
    names: Annotated[
        Optional[list[str]], typer.Argument(metavar="[NAME]...", help="Processes or instances (default: all).", show_default=False, autocompletion=complete_name)
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-F", help="Keep printing what comes, also from new instances, until the supervisor stops.")] = False,
    lines: Annotated[
        Optional[int], typer.Option("--lines", "-n", help="How many of each instance's last lines to print first (default 100; all with --since).", min=0, show_default=False)
    ] = None,
    since: Annotated[
        Optional[str], typer.Option("--since", help="Only what came since: a duration ago (10m, 2h) or a time (2026-05-01T12:00, 12:00).", show_default=False)
    ] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Start each line with the time it arrived.")] = False,
    no_events: Annotated[bool, typer.Option("--no-events", help="Only the output: leave out procctl's own events (started, exited, restarting…).")] = False,
    previous: Annotated[bool, typer.Option("--previous", help="The run before the current (or last) one.")] = False,
    run: Annotated[Optional[str], typer.Option("--run", help="An earlier run, by its id (see `ls .procctl/logs/past`).", show_default=False)] = None,
    file: FileOption = None,
) -> None:
    """Print what processes wrote, with procctl's events among the lines; -F follows them live."""
    from procctl.engine.logread import RunLogs
    from procctl.engine.store import StateDir

    processes, each, path = _manifest(file)
    state = StateDir.beside(path)
    if previous and run is not None:
        raise UsageError("--previous and --run name a run each: give one")
    chosen = run
    if previous:
        past = state.past_runs()
        if not past:
            raise UsageError("no earlier run is kept in .procctl/logs/past")
        chosen = past[-1]
    run_logs = RunLogs(state, chosen)
    if run_logs.fd is None:
        if chosen is not None:
            kept = ", ".join(state.past_runs()) or "none"
            raise UsageError(f"--run: no run {chosen!r} is kept; kept runs: {kept}")
        raise UsageError("no log files yet: run the manifest first")
    selection = Selection(list(names or []), processes, each)
    records = run_logs.events()
    present = selection.pick(_log_names(run_logs, records))
    if not present and not follow:
        raise UsageError("no log files yet: run the manifest first")
    since_ts = parse_since(since) if since is not None else None
    last = lines if lines is not None else (None if since_ts is not None else DEFAULT_LINES)
    printer = Printer(sys.stdout.buffer, timestamps=timestamps)
    printer.widen(list(present))
    following = Follower(run_logs, selection, printer, events=not no_events) if follow and chosen is None else None
    if following is not None:
        following.start(present)
        records = run_logs.events()  # (up to where following began; see `events_seen`)
    _print_history(run_logs, records if not no_events else [], present, printer, last=last, since=since_ts, upto=following)
    if following is not None:
        try:
            following.run()
        except KeyboardInterrupt:
            pass


def _manifest(file: Path | None) -> tuple[list[str], list[str], Path]:
    """The manifest's processes, those with `each` items, and its path. A
    manifest being edited may not load: its logs are still there to read
    (then every name is taken as it is found in them)."""
    from procctl.config.locate import find_manifest
    from procctl.errors import ManifestError

    path = find_manifest(file)
    try:
        manifest = load_manifest_option(path)
    except ManifestError:
        return [], [], path.absolute()
    return list(manifest.processes), [name for name, spec in manifest.processes.items() if spec.each is not None], manifest.path


def _log_names(run_logs: RunLogs, records: list[dict[str, object]]) -> list[str]:
    """The instances' log files: those of the run's logs, and those of the
    instances its events name that never wrote a byte (they have no file:
    their events are all there is to show)."""
    from procctl.engine.logread import log_name_of

    named = {log_name_of(str(record["instance"])) for record in records if record.get("instance", "procctl") != "procctl"}
    return sorted(named.union(run_logs.log_names()))


def _print_history(
    run_logs: RunLogs, records: list[dict[str, object]], present: dict[str, str], printer: Printer, *, last: int | None, since: float | None, upto: Follower | None
) -> None:
    from procctl.engine.logread import event_entries, in_place, interleave, trim_events

    if upto is not None:
        records = records[: upto.events_seen]
    by_instance = event_entries(records, set(present), since=since)
    streams = []
    first_ts: float | None = None
    for instance, log_name in present.items():
        found = run_logs.lines(log_name, instance, last=last, since=since)
        if upto is not None:
            found = [entry for entry in found if entry.position < upto.start_of(instance)]
        shown = trim_events(by_instance.get(instance, []), found, limited=last is not None)
        if upto is not None:
            shown = [entry for entry in shown if entry.position < upto.start_of(instance)]
        if found and found[0].ts is not None:
            first_ts = found[0].ts if first_ts is None else min(first_ts, found[0].ts)
        streams.append(in_place(found, shown))
    overall = [entry for entry in by_instance.get("procctl", []) if last is None or first_ts is None or entry.ts is None or entry.ts >= first_ts]
    streams.append(overall)
    for entry in interleave(streams):
        printer.entry(entry)
    printer.flush()


@dataclass
class Selection:
    """Which instances' logs to show: those of the named processes or
    instances (all when none is named)."""

    names: list[str]
    processes: list[str]
    each: list[str]

    def pick(self, log_names: list[str]) -> dict[str, str]:
        """instance → its log file, for the chosen instances among `log_names`.
        A name that is neither a process of the manifest nor an instance
        with a log is a UsageError."""
        from procctl.config.plan import lone_name
        from procctl.config.select import resolve
        from procctl.engine.logread import instance_name, process_of

        found = {instance_name(log, self.each): log for log in log_names}
        by_process: dict[str, list[tuple[str, str]]] = {process: [] for process in self.processes}
        for instance, log in found.items():
            by_process.setdefault(process_of(instance), []).append((instance, log))
        by_instance = {instance: (instance, log) for instance, log in found.items()}
        for name in self.names:
            lone = lone_name(name)
            if name not in by_instance and lone in by_instance:
                by_instance[name] = by_instance[lone]  # `web.1` is the lone `web`
        return dict(resolve(self.names or list(by_process), by_process, by_instance))


def parse_since(text: str) -> float:
    """`--since`: a duration ago (`10m`), or a time: ISO (`2026-05-01T12:00`)
    or of today (`12:00`)."""
    from procctl.units import parse_duration

    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        if len(text) <= 8 and ":" in text:
            clock = datetime.time.fromisoformat(text)
            return datetime.datetime.combine(datetime.date.today(), clock).timestamp()
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"--since: expected a duration (10m) or a time (2026-05-01T12:00, 12:00), got {text!r}") from None


class Printer:
    """Lines as written, prefixed by their instance when several are shown;
    procctl's events as `[procctl] …` lines among them."""

    def __init__(self, out: BinaryIO, *, timestamps: bool) -> None:
        self._out = out
        self._timestamps = timestamps
        self._names: set[str] = set()
        self._width = 0

    def widen(self, names: list[str]) -> None:
        """These instances are shown (once two are, each line names its own)."""
        self._names.update(names)
        self._width = max([self._width, *(len(name) for name in names)])

    @property
    def _many(self) -> bool:
        return len(self._names) > 1

    def entry(self, entry: Entry) -> None:
        from procctl.records import from_record
        from procctl.ui.plain import describe

        if entry.event is not None:
            try:
                event = from_record(entry.event)
            except (KeyError, TypeError, ValueError):
                return
            text = describe(event) if event is not None else None
            if text is None:
                return
            body = f"[procctl] {text}\n".encode()
        else:
            body = entry.line if entry.line.endswith(b"\n") else entry.line + b"\n"
        prefix = f"{entry.instance.ljust(self._width)} | ".encode() if self._many else b""
        stamp = _stamp(entry.ts).encode() + b" " if self._timestamps else b""
        self._out.write(prefix + stamp + body)

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            raise typer.Exit(0) from None


def _stamp(ts: float | None) -> str:
    if ts is None:
        return " " * 23
    moment = datetime.datetime.fromtimestamp(ts)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@dataclass
class _Tail:
    """Where following one file has got to."""

    name: str
    fd: int
    inode: int
    offset: int
    position: int
    """In the instance's output (for a log), where `offset` is."""
    partial: bytes = b""


@dataclass
class Follower:
    """`logs -f`: what the logs and the event log gain, printed as it comes,
    also from instances that appear (scale up, a reload); ends once the
    supervisor of the run is gone (and what it wrote last is printed)."""

    run_logs: RunLogs
    selection: Selection
    printer: Printer
    events: bool
    tails: dict[str, _Tail] = field(default_factory=dict)
    followed: dict[str, None] = field(default_factory=dict)
    """The instances followed, in the order they came (with a tail once their
    log has a file): lines that arrive together are printed in that order."""
    event_tail: _Tail | None = None
    events_seen: int = 0
    """How many event records the history printed (the rest are followed)."""
    record: dict[str, object] | None = None

    def start(self, present: dict[str, str]) -> None:
        """Before the history is read: where following begins for each log
        (the history prints what is before, the follower what comes after)."""
        self.record = self.run_logs.state.run_record()
        self.printer.widen(list(present))
        self.followed.update(dict.fromkeys(present))
        for instance, log_name in present.items():
            self._open(instance, log_name, at_end=True)
        # Followed even when not shown: an instance's end is what prints its
        # last line when that has no newline.
        self.event_tail = self._open_events(at_end=True)
        if self.events:
            self.events_seen = len(self.run_logs.events()) if self.event_tail is None else self._events_before_tail()

    def _events_before_tail(self) -> int:
        # The records the history may print: those of the rotated files and
        # of the current file up to where following starts.
        from procctl.engine import logindex
        from procctl.engine.logread import parse_events

        assert self.event_tail is not None
        count = 0
        for name in logindex.pieces(self.run_logs.names(), logindex.EVENTS):
            fd = self.run_logs.open(name)
            if fd is None:
                continue
            try:
                size = self.event_tail.offset if name == logindex.EVENTS else os.fstat(fd).st_size
                count += len(parse_events(os.pread(fd, size, 0))[0])
            finally:
                os.close(fd)
        return count

    def start_of(self, instance: str) -> int:
        tail = self.tails.get(instance)
        return tail.position if tail is not None else 2**63

    def _open(self, instance: str, log_name: str, *, at_end: bool) -> None:
        fd = self.run_logs.open(log_name)
        if fd is None:
            return
        info = os.fstat(fd)
        times = self.run_logs.times(log_name)
        base = times.first_position or 0
        offset = info.st_size if at_end else 0
        self.tails[instance] = _Tail(log_name, fd, info.st_ino, offset, base + offset)

    def _open_events(self, *, at_end: bool) -> _Tail | None:
        from procctl.engine import logindex

        fd = self.run_logs.open(logindex.EVENTS)
        if fd is None:
            return None
        info = os.fstat(fd)
        return _Tail(logindex.EVENTS, fd, info.st_ino, info.st_size if at_end else 0, 0)

    def run(self) -> None:
        from procctl.engine.logread import supervisor_alive

        while True:
            alive = supervisor_alive(self.run_logs.state, self.record)
            self.poll(last=not alive)
            if not alive:
                # Its last words were read after it was gone: nothing more comes.
                return
            time.sleep(FOLLOW_POLL_S)

    def poll(self, *, last: bool = False) -> None:
        """Print what came since the last look. A line still without its
        newline waits for the rest, unless an event of its instance came
        after it (it ended, was stopped, restarted) or nothing more comes
        (`last`): then it is printed as it is, as `logs` without -f does."""
        from procctl.engine.logread import Entry, event_entries, in_place, interleave

        records = self._new_events()
        for instance, log_name in self.selection.pick(_log_names(self.run_logs, records)).items():
            if instance not in self.followed:
                self.printer.widen([instance])
                self.followed[instance] = None
            if instance not in self.tails:
                self._open(instance, log_name, at_end=False)
        now = time.time()
        by_instance = event_entries(records, self.followed.keys(), since=None)
        streams = []
        for instance in self.followed:
            new: list[Entry] = []
            tail = self.tails.get(instance)
            events = by_instance.get(instance, [])
            lines = self._read_log(tail) if tail is not None else []
            if tail is not None and tail.partial and (last or any(event.position >= tail.position + len(tail.partial) for event in events)):
                lines.append((tail.partial, tail.position))
                tail.position += len(tail.partial)
                tail.partial = b""
            for data, position in lines:
                new.append(Entry(now, instance, position, line=data))
            streams.append(in_place(new, events if self.events else []))
        if self.events:
            streams.append(by_instance.get("procctl", []))
        entries = interleave(streams)
        for entry in entries:
            self.printer.entry(entry)
        if entries:
            self.printer.flush()

    def _read_log(self, tail: _Tail) -> list[tuple[bytes, int]]:
        """Whole lines appended since the last look (across a rotation)."""
        chunks = [self._read_rest(tail)]
        if self._replaced(tail):
            # Rotated: what the old file got last, then the new file.
            fd = self.run_logs.open(tail.name)
            if fd is not None:
                os.close(tail.fd)
                tail.fd, tail.inode, tail.offset = fd, os.fstat(fd).st_ino, 0
                chunks.append(self._read_rest(tail))
        data = tail.partial + b"".join(chunks)
        cut = data.rfind(b"\n") + 1
        tail.partial = data[cut:]
        out = []
        start = 0
        while start < cut:
            end = data.index(b"\n", start) + 1
            out.append((data[start:end], tail.position + start))
            start = end
        tail.position += cut
        return out

    def _read_rest(self, tail: _Tail) -> bytes:
        size = os.fstat(tail.fd).st_size
        if size <= tail.offset:
            return b""
        data = os.pread(tail.fd, size - tail.offset, tail.offset)
        tail.offset += len(data)
        return data

    def _replaced(self, tail: _Tail) -> bool:
        assert self.run_logs.fd is not None
        try:
            info = os.stat(tail.name, dir_fd=self.run_logs.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return stat.S_ISREG(info.st_mode) and info.st_ino != tail.inode

    def _new_events(self) -> list[dict[str, object]]:
        from procctl.engine.logread import parse_events

        if self.event_tail is None:
            self.event_tail = self._open_events(at_end=False)
            if self.event_tail is None:
                return []
        tail = self.event_tail
        data = tail.partial + self._read_rest(tail)
        if self._replaced(tail):
            fd = self.run_logs.open(tail.name)
            if fd is not None:
                os.close(tail.fd)
                tail.fd, tail.inode, tail.offset = fd, os.fstat(fd).st_ino, 0
                data += self._read_rest(tail)
        records, used = parse_events(data)
        tail.partial = data[used:]
        return records
