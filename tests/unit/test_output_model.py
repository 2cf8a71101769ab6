"""Line splitting, the bounded event queue and the plain printer, on recorded data."""

from __future__ import annotations

import io
import re

from procctl import events
from procctl.engine.process import MAX_LINE_BYTES, LineSplitter
from procctl.ui.plain import PlainPrinter


def test_splitter_keeps_partial_lines_until_complete() -> None:
    split = LineSplitter()
    assert split.feed(b"hel") == b""
    assert split.feed(b"lo\nwor") == b"hello\n"
    assert split.feed(b"ld\n\n") == b"world\n\n"
    assert split.flush() == b""
    assert split.feed(b"tail") == b""
    assert split.flush() == b"tail\n"


def test_splitter_bounds_an_endless_line() -> None:
    split = LineSplitter()
    out = b""
    chunk = b"x" * 10_000
    for _ in range(100):
        out += split.feed(chunk)
    out += split.flush()
    # Nothing is lost, and no piece is longer than the cap.
    assert out.replace(b"\n", b"") == chunk * 100
    assert max(len(piece) for piece in out.split(b"\n")) <= MAX_LINE_BYTES + len(chunk)


def test_event_queue_drops_oldest_output_and_counts_lines() -> None:
    queue = events.EventQueue(max_output_events=3)
    queue(events.Started("a", "a", pid=1))
    for i in range(5):
        queue(events.Output("a", "a", stream="stdout", data=b"line %d\nmore\n" % i))
    drained = queue.drain()
    outputs = [e for e in drained if isinstance(e, events.Output)]
    assert [o.data[:6] for o in outputs] == [b"line 2", b"line 3", b"line 4"]
    assert isinstance(drained[0], events.Started)
    assert queue.dropped["a"] == 4


def test_plain_printer_prefixes_every_line() -> None:
    out = io.BytesIO()
    printer = PlainPrinter(out, color=False, names=["web.1", "db"], processes=["web", "db"])
    printer(events.Output("web", "web.1", stream="stdout", data=b"one\ntwo\n"))
    printer(events.Output("db", "db", stream="stderr", data=b"bad \xff\n"))
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"\d\d:\d\d:\d\d web\.1   \| one", lines[0])
    assert lines[1].endswith("web.1   | two")
    assert lines[2].endswith("db      | bad \ufffd")


def test_plain_printer_colors_names_only_when_asked() -> None:
    out = io.BytesIO()
    printer = PlainPrinter(out, color=True, names=["web"], processes=["web"])
    printer(events.Output("web", "web", stream="stdout", data=b"hi\n"))
    assert re.search(rb"\x1b\[36mweb\s*\x1b\[0m \| hi", out.getvalue())


def test_plain_printer_survives_a_closed_stdout() -> None:
    class Closed(io.RawIOBase):
        def write(self, data: object) -> int:
            raise BrokenPipeError

    printer = PlainPrinter(Closed(), color=False, names=["a"])  # type: ignore[arg-type]
    printer(events.Output("a", "a", stream="stdout", data=b"x\n"))
    assert printer.broken
    printer(events.Output("a", "a", stream="stdout", data=b"y\n"))
