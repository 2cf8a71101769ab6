"""Foreman-style lines: `HH:MM:SS name | text`, the name colored when the
terminal allows. Fast path for output: one prefix per chunk of lines and one
`bytes.replace`; no per-line Python work."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import BinaryIO

from procctl import events
from procctl.engine.state import signal_name
from procctl.units import format_size

# Cycled over process names, as foreman does; red is kept for errors.
_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
_SYSTEM = "procctl"


class PlainPrinter:
    """A bus subscriber writing prefixed lines to a binary stream.

    Writes are blocking: when stdout is a slow pipe, procctl slows down with
    it rather than losing lines (the log files are complete either way).
    """

    def __init__(self, out: BinaryIO, *, color: bool, names: Iterable[str], processes: Iterable[str] = ()) -> None:
        self._out = out
        self._color = color
        names = list(names)
        self._width = max([len(n) for n in names] + [len(_SYSTEM)])
        self._colors: dict[str, int] = {}
        for i, process in enumerate(dict.fromkeys(processes)):
            self._colors[process] = _PALETTE[i % len(_PALETTE)]
        self._prefixes: dict[tuple[str, str, bool], bytes] = {}
        self._clock_second = -1
        self._clock_text = ""
        self.broken = False
        """Set when stdout went away (a closed pipe); nothing more is written."""

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

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._out.write(data)
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True

    def system(self, ts: float, text: str, *, error: bool = False) -> None:
        self._write(self._prefix(ts, _SYSTEM, _SYSTEM, error) + text.encode() + b"\n")

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Output):
            data = event.data
            if not data.isascii():
                data = data.decode("utf-8", "replace").encode()
            prefix = self._prefix(event.ts, event.name, event.instance)
            self._write(prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n")
            return
        message = describe(event)
        if message is not None:
            error = isinstance(event, events.Notice) and event.level == "error"
            self.system(event.ts, message, error=error)


def describe(event: events.Event) -> str | None:
    """One human line for a state event, or None for events not worth a line."""
    if isinstance(event, events.Started):
        again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        return f"{event.instance} started with pid {event.pid}{again}"
    if isinstance(event, events.Ready):
        return f"{event.instance} is ready ({event.probe})"
    if isinstance(event, events.Exited):
        how = f"code {event.code}" if event.code is not None else f"signal {signal_name(event.signal)}"
        return f"{event.instance} {event.status} with {how} after {event.duration_s:.2f}s"
    if isinstance(event, events.Restarting):
        return f"{event.instance} restarting in {event.delay_s:g}s (restart {event.attempt})"
    if isinstance(event, events.Skipped):
        return f"{event.instance} skipped: {event.why}"
    if isinstance(event, events.LimitExceeded):
        if event.maximum:
            shown = format_size if event.limit == "memory" else (lambda v: f"{v:g}")
            figure = f" {shown(event.value)} > {shown(event.maximum)}"
        else:
            figure = " (enforced by the kernel)"
        return f"{event.instance} limit exceeded: {event.limit}{figure}; on_limit = {event.action}"
    if isinstance(event, events.Notice):
        return event.message if event.instance == _SYSTEM else f"{event.instance}: {event.message}"
    return None
