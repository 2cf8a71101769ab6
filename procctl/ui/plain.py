"""Output for a log, not a screen. `PlainPrinter`: foreman-style lines
`HH:MM:SS name | text`, the name colored when the terminal allows (fast path:
one prefix per chunk of lines and one `bytes.replace`; no per-line Python
work). `GroupedPrinter`: each run's output as one block when it ends."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from procctl import events
from procctl.engine.outcome import RunResult
from procctl.states import signal_name
from procctl.ui.writer import Writer
from procctl.units import format_duration, format_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    import tempfile

# Cycled over process names, as foreman does; red is kept for errors.
_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_SYSTEM = "procctl"


_UNDESCRIBED = frozenset({events.Queued, events.StateChanged, events.Sample, events.PoolSample, events.RegionSample})
"""Events without a line of their own (most of a run's: each job's queueing
and states), known by their type at once rather than by every test below."""


class PlainPrinter:
    """A bus subscriber writing prefixed lines through a `Writer`: when
    stdout is a slow pipe, the children's output waits rather than being
    lost, and the loop never does (the log files are complete either way)."""

    ignores = _UNDESCRIBED
    """(The bus does not call it with these.)"""

    def __init__(self, write: Writer, *, color: bool, names: Iterable[str], processes: Iterable[str] = ()) -> None:
        self._write = write
        self._color = color
        names = list(names)
        self._width = max([len(n) for n in names] + [len(_SYSTEM)])
        self._colors: dict[str, int] = {}
        for i, process in enumerate(dict.fromkeys(processes)):
            self._colors[process] = _PALETTE[i % len(_PALETTE)]
        self._prefixes: dict[tuple[str, str, bool], bytes] = {}
        self._clock_second = -1
        self._clock_text = ""

    def _clock(self, ts: float) -> str:
        second = int(ts)
        if second != self._clock_second:
            self._clock_second = second
            self._clock_text = time.strftime("%H:%M:%S", time.localtime(ts))
        return self._clock_text

    def _prefix(self, ts: float, process: str, instance: str, error: bool = False) -> bytes:
        key = (process, instance, error)
        name_part = self._prefixes.get(key)
        if name_part is None:
            padded = instance.ljust(self._width)
            if self._color:
                code = 31 if error else self._colors.get(process, 0)
                padded = f"\x1b[{code}m{padded}\x1b[0m" if code else padded
            name_part = f" {padded} | ".encode()
            self._prefixes[key] = name_part
        return self._clock(ts).encode() + name_part

    @property
    def broken(self) -> bool:
        """True once stdout went away (a closed pipe); nothing more is written."""
        return self._write.broken

    def system(self, ts: float, text: str, *, error: bool = False) -> None:
        self._write(self._prefix(ts, _SYSTEM, _SYSTEM, error) + text.encode() + b"\n")

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Output):
            # Every line of the text ends in a newline: each newline takes the
            # next line's prefix, the last one's is cut off again. Two copies
            # of the chunk after encoding it (a flood's chunks are 256 KiB).
            prefix = self._prefix(event.ts, event.name, event.instance)
            body = event.text.encode().replace(b"\n", b"\n" + prefix)
            self._write(b"".join((prefix, memoryview(body)[: len(body) - len(prefix)])))
            return
        message = describe(event)
        if message is not None:
            error = isinstance(event, events.Notice) and event.level == "error"
            self.system(event.ts, message, error=error)


def describe(event: events.Event) -> str | None:
    """One human line for a state event, or None for events not worth a line."""
    if type(event) in _UNDESCRIBED:
        return None
    if isinstance(event, events.Started):
        again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        return f"{event.instance} started with pid {event.pid}{again}"
    if isinstance(event, events.Ready):
        return f"{event.instance} is ready ({event.probe})"
    if isinstance(event, events.Exited):
        how = f"code {event.code}" if event.code is not None else f"signal {signal_name(event.signal)}"
        return f"{event.instance} {event.status.text} with {how} after {event.duration_s:.2f}s"
    if isinstance(event, events.Restarting):
        why = f": {event.reason}" if event.reason else ""
        return f"{event.instance} restarting in {event.delay_s:g}s (restart {event.attempt}){why}"
    if isinstance(event, events.Skipped):
        return f"{event.instance} skipped: {event.why}"
    if isinstance(event, events.GaveUp):
        restarts = f"{event.restarts} restart{'s' if event.restarts != 1 else ''}"
        return f"{event.instance} gave up after {restarts} in {format_duration(event.within_s)}: {event.why}"
    if isinstance(event, events.LimitExceeded):
        shown = format_size if event.limit == "memory" else (lambda v: f"{v:g}")
        if event.mechanism.startswith("cgroup"):
            figure = f" reached {shown(event.maximum)} ({event.mechanism})"
        elif event.maximum:
            figure = f" {shown(event.value)} > {shown(event.maximum)}"
        else:
            figure = " (enforced by the kernel)"
        return f"{event.instance} limit exceeded: {event.limit}{figure}; on_limit = {event.action}"
    if isinstance(event, events.Notice):
        return event.message if event.instance == _SYSTEM else f"{event.instance}: {event.message}"
    if isinstance(event, events.Message):
        return f"{event.instance} ← {event.sender or 'procctl send'}: {_shown(event.text)}"
    if isinstance(event, events.Reloaded):
        return f"{event.instance}: reload: {event.detail}"
    if isinstance(event, events.StatusMessage):
        return f"{event.instance} status: {_shown(event.text)}"
    return None


def _shown(text: str, width: int = 200) -> str:
    """Text from a process, as one line of at most `width` characters."""
    line = "".join(ch if ch.isprintable() else " " for ch in text[: width + 1])
    return line if len(line) <= width else line[: width - 1] + "…"


_SPOOL_BYTES = 1 << 20
"""Output of one run held in memory before it spills to a temporary file."""


class GroupedPrinter:
    """A bus subscriber printing each run's output as one block when the run
    ends (GNU parallel's --group), headed by the instance, its status and its
    duration, so parallel jobs never interleave in a CI log.

    A run's output waits in a spooled temporary file (memory up to 1 MiB,
    disk beyond), so a job that writes gigabytes costs disk, not memory, and
    nothing is lost. Under GitHub Actions each block is folded in
    `::group::`/`::endgroup::`, and the child's own lines are fenced with
    `::stop-commands::` so that what a job prints is never taken for a
    workflow command.
    """

    def __init__(self, write: Writer, *, color: bool, github: bool) -> None:
        self._write = write
        self._color = color
        self._github = github
        self._runs: dict[str, tempfile.SpooledTemporaryFile[bytes]] = {}
        """Each instance's output of its current run, until the run ends."""

    def _spool(self, instance: str) -> tempfile.SpooledTemporaryFile[bytes]:
        spool = self._runs.get(instance)
        if spool is None:
            import tempfile  # (with shutil, bz2, lzma: 2 ms that `run --plain`, which imports this module, need not pay)

            spool = self._runs[instance] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
        return spool

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Output):
            self._spool(event.instance).write(event.text.encode())
            return
        if isinstance(event, events.Exited):
            self._flush(event.instance, describe(event) or event.instance, failed=event.status.failure)
            return
        if isinstance(event, events.Skipped):
            self._write(self._header(describe(event) or event.instance, failed=False) + b"\n")
            return
        if isinstance(event, (events.Started, events.Ready, events.PoolSample)):
            return  # The header says how the run went; these would only be noise.
        message = describe(event)
        if message is None:
            return
        line = f"[{_SYSTEM}] {message}\n".encode()
        if event.instance == _SYSTEM:
            self._write(line)  # About the run as a whole: no block to wait for.
        else:
            self._spool(event.instance).write(line)

    def _header(self, text: str, *, failed: bool) -> bytes:
        line = f"=== {text}"
        if self._color:
            line = f"\x1b[1;{31 if failed else 32}m{line}\x1b[0m"
        return line.encode()

    def _flush(self, instance: str, headline: str, *, failed: bool) -> None:
        spool = self._runs.pop(instance, None)
        if self._github:
            token = os.urandom(8).hex()  # (what secrets.token_hex(8) makes, without importing it)
            self._write(f"::group::{_github_escape(headline)}\n::stop-commands::{token}\n".encode())
        else:
            self._write(self._header(headline, failed=failed) + b"\n")
        if spool is not None:
            # Whole lines only (a run's output and procctl's notes).
            self._write.copy(spool)
        if self._github:
            self._write(f"::{token}::\n::endgroup::\n".encode())

    def finish(self, result: RunResult) -> None:
        """Print what is still held: instances whose run never ended in an
        exit (a command that could not be started), with their final status."""
        by_name = {inst.name: inst for inst in result.instances}
        for instance in list(self._runs):
            inst = by_name.get(instance)
            status = f"{instance} {inst.status_text}" if inst is not None else instance
            self._flush(instance, status, failed=inst is not None and inst.state.failure)


def _github_escape(text: str, *, property_value: bool = False) -> str:
    """A workflow command's data (or property) as GitHub's runner unescapes it."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_value:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def github_annotations(result: RunResult) -> list[str]:
    """One `::error::` line per failed instance, naming it, its status and its
    log, for the GitHub Actions job summary."""
    lines = []
    for inst in result.instances:
        if not inst.state.failure:
            continue
        where = f"; log: {inst.log_path}" if inst.log_path else ""
        why = f" ({inst.reason})" if inst.reason else ""
        title = _github_escape(f"{inst.name} {inst.status_text}", property_value=True)
        lines.append(f"::error title={title}::{_github_escape(f'{inst.name} {inst.status_text}{why}{where}')}")
    return lines


def github_actions() -> bool:
    """True when running as a GitHub Actions step (the runner sets this)."""
    return os.environ.get("GITHUB_ACTIONS") == "true"
