"""Machine-readable records of a run: the `--events` JSON-lines stream (a bus
subscriber) and the `--junit` XML file (from the RunResult).

The stream's schema is docs/events.md; `records.event_records` is the one place
that maps an engine event onto it (the control socket's subscription uses it too). Output is one record per line, so a reader
never has to split; units are in the field names where they are not obvious
(`duration` and `delay` are seconds, as JUnit's `time` is).
"""

from __future__ import annotations

import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from procctl import events
from procctl.records import event_records, record_line
from procctl.bus import Flow
from procctl.engine.outcome import InstanceResult, RunResult
from procctl.states import State, signal_name
from procctl.engine.logread import read_log_tail
from procctl.errors import ProcctlError
from procctl.ui.writer import Writer

JUNIT_LOG_LINES = 100
"""Lines of an instance's log quoted in its <failure>, or in its <system-out>
when it passed."""
JUNIT_LOG_BYTES = 64 << 10
"""...and never more bytes than this (a log may end in one huge line)."""


class EventStream:
    """A bus subscriber writing `event_records` as JSON lines, through a
    `Writer` (a slow reader never blocks the run).

    Each event's records are written together, so a reader following the
    file (`tail -f`) sees whole lines as they happen. When the reader goes
    away (a closed pipe) the stream stops; the run goes on.
    """

    def __init__(self, out: BinaryIO, *, close: bool, flow: Flow | None = None, on_gone: Callable[[], None] | None = None) -> None:
        self._out = out
        self._write = Writer(out, flow, on_gone=on_gone)
        self._close = close

    @classmethod
    def open(cls, target: str, flow: Flow | None = None, on_stdout_gone: Callable[[], None] | None = None) -> EventStream:
        """'-' is stdout (`on_stdout_gone` is told if its reader goes away);
        anything else a file, created (or truncated) now so that a bad path
        fails before anything starts. Raises OSError."""
        if target == "-":
            import sys

            return cls(sys.stdout.buffer, close=False, flow=flow, on_gone=on_stdout_gone)
        return cls(open(target, "wb"), close=True, flow=flow)

    def __call__(self, event: events.Event) -> None:
        if not self._write.broken:
            self._write(b"".join(record_line(record) for record in event_records(event)))

    def close(self) -> None:
        """Write what is left (waiting for the reader), then close the file."""
        self._write.close()
        if self._close:
            try:
                self._out.close()
            except OSError:
                pass


# XML 1.0 forbids most control characters, even escaped; a log may hold any byte.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return _NOT_XML.sub("\ufffd", text)


def _seconds(value: float | None) -> str:
    return f"{value or 0.0:.3f}"


def _failure_message(inst: InstanceResult) -> str:
    if inst.signal is not None:
        how = f"signal {signal_name(inst.signal)}"
    elif inst.exit_code is not None:
        how = f"exit code {inst.exit_code}"
    else:
        how = "no exit status"
    why = f": {inst.reason}" if inst.reason else ""
    return f"{inst.name} {inst.state.text} ({how}){why}"


def junit_tree(result: RunResult, suite: str) -> ET.ElementTree:
    """One <testsuite> named `suite`, one <testcase> per instance: classname
    the process, time the summed run time; a failure carries the exit status
    and the last lines of the log, a passing case the last lines of its log in
    <system-out>; a skipped instance is <skipped>. Valid against the common
    JUnit schema (Jenkins' junit-10.xsd), which has no `skipped` count on
    <testsuites>: it is on <testsuite> only."""
    failures = sum(1 for inst in result.instances if inst.state.failure)
    skipped = sum(1 for inst in result.instances if inst.state is State.SKIPPED)
    started = min((inst.started_at for inst in result.instances if inst.started_at), default=time.time())
    counts = {
        "tests": str(len(result.instances)),
        "failures": str(failures),
        "errors": "0",
        "time": _seconds(result.duration_s),
    }
    root = ET.Element("testsuites", {"name": "procctl", **counts})
    testsuite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": _xml_text(suite),
            **counts,
            "skipped": str(skipped),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "hostname": _xml_text(socket.gethostname()),
        },
    )
    for inst in result.instances:
        case = ET.SubElement(testsuite, "testcase", {"name": _xml_text(inst.name), "classname": _xml_text(inst.process), "time": _seconds(inst.duration_s)})
        if inst.state.failure:
            failure = ET.SubElement(case, "failure", {"message": _xml_text(_failure_message(inst)), "type": str(inst.state)})
            failure.text = _xml_text(_log_tail(inst.log_path))
        elif inst.state is State.SKIPPED:
            ET.SubElement(case, "skipped", {"message": _xml_text(inst.reason or "skipped")})
        elif inst.log_path is not None:
            try:
                output = _log_output(inst.log_path)
            except (OSError, ProcctlError):
                output = ""  # nothing to show; the case passed all the same
            if output:
                ET.SubElement(case, "system-out").text = _xml_text(output)
    ET.indent(root)
    return ET.ElementTree(root)


def _log_output(path: Path) -> str:
    """The last lines of a log, as they are, never read through a link.
    Raises OSError or StateDirError."""
    return read_log_tail(path, JUNIT_LOG_LINES, max_bytes=JUNIT_LOG_BYTES).decode("utf-8", "replace")


def _log_tail(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return f"last {JUNIT_LOG_LINES} lines of {path}:\n" + _log_output(path)
    except OSError as exc:
        return f"(log {path} unreadable: {exc.strerror or exc})"
    except ProcctlError as exc:
        return f"(log {path} unreadable: {exc})"


def write_junit(result: RunResult, suite: str, target: str) -> None:
    """Write the JUnit XML to `target` ('-' is stdout) in one go, through a
    temporary file so that a reader never sees half a file. Raises OSError."""
    tree = junit_tree(result, suite)
    if target == "-":
        import sys

        tree.write(sys.stdout.buffer, encoding="utf-8", xml_declaration=True)
        sys.stdout.buffer.write(b"\n")
        return
    partial = f"{target}.partial-{os.getpid()}"
    try:
        tree.write(partial, encoding="utf-8", xml_declaration=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
