"""Line splitting, the bounded event queue, the printers and the writer they
write through, on recorded data."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from procctl import events
from procctl.bus import Bus, EventQueue, Flow
from procctl.engine.lines import MAX_LINE_BYTES, LineSplitter
from procctl.ui.live_model import LiveModel, InstanceInfo
from procctl.ui.live import clean
from procctl.ui.plain import GroupedPrinter, PlainPrinter
from procctl.ui.sinks import event_records
from procctl.ui.writer import BATCH_BYTES, HIGH_WATER_BYTES, Writer
from procctl.states import State


def test_splitter_keeps_partial_lines_until_complete() -> None:
    split = LineSplitter()
    assert split.feed(b"hel") == ""
    assert split.feed(b"lo\nwor") == "hello\n"
    assert split.feed(b"ld\n\n") == "world\n\n"
    assert split.flush() == ""
    assert split.feed(b"tail") == ""
    assert split.flush() == "tail\n"


def test_splitter_bounds_an_endless_line_and_cuts_it_between_characters() -> None:
    split = LineSplitter()
    out = ""
    chunk = "é".encode() * 5_000  # two bytes each: a cut in the middle of one would show U+FFFD
    for _ in range(100):
        out += split.feed(chunk)
    out += split.flush()
    # Nothing is lost, and no piece is longer than the cap.
    assert out.replace("\n", "") == "é" * 500_000
    assert max(len(piece.encode()) for piece in out.split("\n")) <= MAX_LINE_BYTES


def test_one_rule_for_line_ends_and_carriage_returns() -> None:
    """Only \\n ends a line; \\r\\n is a line end too, any other \\r is text;
    what is not UTF-8 becomes U+FFFD; a CRLF cut between two reads is one."""
    split = LineSplitter()
    text = split.feed(b"a\rb\nc\r\nd\x0ce\x0bf\xc2\x85g\xe2\x80\xa8h\nbad \xff\nsplit\r") + split.feed(b"\nend")
    text += split.flush()
    assert text.split("\n")[:-1] == ["a\rb", "c", "d\x0ce\x0bf\x85g\u2028h", "bad \ufffd", "split", "end"]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\n", b"\r", b"\r\n", b"\xff", b"\xe2\x80", b"\x00"]), max_size=200).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_any_cutting_of_a_stream_gives_the_same_lines(data: bytes, cuts: list[int]) -> None:
    """However the reads cut a stream (lines shorter than MAX_LINE_BYTES),
    the lines are those of the whole stream decoded at once."""
    split, text, start = LineSplitter(), "", 0
    for cut in sorted({min(cut, len(data)) for cut in cuts}) + [len(data)]:
        text += split.feed(data[start:cut]) if cut > start else ""
        start = max(start, cut)
    text += split.flush()
    whole = data if not data or data.endswith(b"\n") else data + b"\n"
    assert text == whole.replace(b"\r\n", b"\n").decode("utf-8", "replace")


def _model_lines(event: events.Output) -> list[str]:
    model = LiveModel([InstanceInfo("web", "web")], max_parallel=1)
    model.fold([event])
    return [text for _, _, text in model.tail]


def _plain_lines(event: events.Output) -> list[str]:
    out = io.BytesIO()
    write = Writer(out)
    PlainPrinter(write, color=False, names=["web"])(event)
    write.close()
    return [line.split(" | ", 1)[1] for line in out.getvalue().decode().split("\n")[:-1]]


def _grouped_lines(event: events.Output) -> list[str]:
    out = io.BytesIO()
    write = Writer(out)
    printer = GroupedPrinter(write, color=False, github=False)
    printer(event)
    printer(events.Exited("web", "web", status=State.EXITED, code=0, signal=None, duration_s=1.0))
    write.close()
    return out.getvalue().decode().split("\n")[1:-1]


def test_every_sink_gets_the_same_lines() -> None:
    """`a\\rb` is one line in the event stream, the plain and grouped output
    and the live view alike (the live view used str.splitlines, which cut it
    in two, and at \\f, \\x85 and U+2028 too)."""
    split = LineSplitter()
    event = events.Output("web", "web", stream="stdout", text=split.feed(b"a\rb\nc\r\nd\x0ce\xc2\x85f\xe2\x80\xa8g\n"))
    expected = ["a\rb", "c", "d\x0ce\x85f\u2028g"]
    assert event.lines() == expected
    assert [record["line"] for record in event_records(event)] == expected
    assert _plain_lines(event) == expected
    assert _grouped_lines(event) == expected
    assert _model_lines(event) == expected
    # Drawn, a line redrawn with \r shows what a terminal would show last.
    assert clean("10%\r20%\r30%") == "30%"


def test_event_queue_drops_oldest_output_and_counts_lines() -> None:
    queue = EventQueue(max_output_events=3)
    queue(events.Started("a", "a", pid=1))
    for i in range(5):
        queue(events.Output("a", "a", stream="stdout", text=f"line {i}\nmore\n"))
    drained = queue.drain()
    outputs = [e for e in drained if isinstance(e, events.Output)]
    assert [o.text[:6] for o in outputs] == ["line 2", "line 3", "line 4"]
    assert isinstance(drained[0], events.Started)
    assert queue.dropped["a"] == 4


def test_event_queue_bounds_the_characters_it_holds_too() -> None:
    """A flooding child's events are large (a grown pipe's 256 KiB): the
    queue keeps at most `max_output_chars` of them, and never drops the
    newest event, however large."""
    queue = EventQueue(max_output_events=100, max_output_chars=25)
    for i in range(5):
        queue(events.Output("a", "a", stream="stdout", text=f"line {i}\n"))  # 7 characters each
    queue(events.Output("b", "b", stream="stdout", text="x" * 40 + "\n"))
    assert [e.text for e in queue.drain() if isinstance(e, events.Output)] == ["x" * 40 + "\n"]
    assert queue.dropped == {"a": 5}
    for i in range(5):
        queue(events.Output("a", "a", stream="stdout", text=f"line {i}\n"))
    assert [e.text[:6] for e in queue.drain() if isinstance(e, events.Output)] == ["line 2", "line 3", "line 4"]


def test_plain_printer_prefixes_every_line() -> None:
    out = io.BytesIO()
    write = Writer(out)
    printer = PlainPrinter(write, color=False, names=["web.1", "db"], processes=["web", "db"])
    printer(events.Output("web", "web.1", stream="stdout", text="one\ntwo\n"))
    printer(events.Output("db", "db", stream="stderr", text="bad \ufffd\n"))
    printer(events.Output("db", "db", stream="stdout", text="\n\nlast\n"))
    write.close()
    lines = out.getvalue().decode().split("\n")
    assert lines.pop() == ""
    assert len(lines) == 6
    assert [line.split(" | ", 1)[1] for line in lines[3:]] == ["", "", "last"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d web\.1   \| one", lines[0])
    assert lines[1].endswith("web.1   | two")
    assert lines[2].endswith("db      | bad \ufffd")


def test_plain_printer_colors_names_only_when_asked() -> None:
    out = io.BytesIO()
    write = Writer(out)
    printer = PlainPrinter(write, color=True, names=["web"], processes=["web"])
    printer(events.Output("web", "web", stream="stdout", text="hi\n"))
    write.close()
    assert re.search(rb"\x1b\[36mweb\s*\x1b\[0m \| hi", out.getvalue())


def test_plain_printer_survives_a_closed_stdout() -> None:
    class Closed(io.RawIOBase):
        def write(self, data: object) -> int:
            raise BrokenPipeError

    write = Writer(Closed())  # type: ignore[arg-type]
    printer = PlainPrinter(write, color=False, names=["a"])
    printer(events.Output("a", "a", stream="stdout", text="x\n"))
    write.close()
    assert printer.broken
    printer(events.Output("a", "a", stream="stdout", text="y\n"))
    write.close()


def test_a_stuck_reader_holds_the_flow_and_a_reader_catching_up_releases_it() -> None:
    """1. Nobody reads the writer's pipe: every call returns at once, and past
       the high-water mark the writer holds the bus's flow.
    2. A reader drains the pipe: the flow is released, and every byte arrived."""
    sent = HIGH_WATER_BYTES + (1 << 20)

    async def scenario() -> tuple[bool, bytes]:
        read_end, write_end = os.pipe()
        flow = Flow()
        with os.fdopen(write_end, "wb") as out:
            write = Writer(out, flow)
            for _ in range(sent // 65536):
                write(b"x" * 65536)
            held = flow.held
            released = asyncio.Event()
            flow.when_released(released.set)
            received: list[bytes] = []
            reader = threading.Thread(target=lambda: received.append(b"".join(iter(lambda: os.read(read_end, 1 << 16), b""))))
            reader.start()
            await asyncio.wait_for(released.wait(), 30)
            write.close()
        reader.join(30)
        os.close(read_end)
        return held, received[0]

    held, received = asyncio.run(scenario())
    assert held
    assert received == b"x" * sent


def test_a_turns_writes_go_out_together_in_order_when_the_turn_ends() -> None:
    """Written to a SOCK_SEQPACKET socket, whose reader gets one packet per write:
    1. Three lines written during one turn of the loop are not out yet while
       it runs; they come as one write, in order, once its callbacks are done
       (the next turn, before the loop waits for anything).
    2. A piece of BATCH_BYTES or more goes out at once, after what came before it.
    3. With no loop running, a write goes out at once."""
    ours, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reader.setblocking(False)
    out = ours.makefile("wb", buffering=0)
    write = Writer(out)  # type: ignore[arg-type]

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes]]:
        write(b"one\n")
        write(b"two\n")
        write(b"three\n")
        during = _packets(reader)
        await asyncio.sleep(0)
        after = _packets(reader)
        write(b"four\n")
        write(b"x" * BATCH_BYTES)
        large = _packets(reader)
        return during, after, large

    try:
        during, after, large = asyncio.run(scenario())
        assert during == []
        assert after == [b"one\ntwo\nthree\n"]
        assert large == [b"four\n", b"x" * BATCH_BYTES]
        write(b"five\n")
        assert _packets(reader) == [b"five\n"]
    finally:
        write.close()
        out.close()
        ours.close()
        reader.close()


def _packets(sock: socket.socket) -> list[bytes]:
    packets = []
    while True:
        try:
            packets.append(sock.recv(1 << 20))
        except BlockingIOError:
            return packets


def test_the_bus_skips_a_subscriber_only_for_the_kinds_it_ignores() -> None:
    """1. A subscriber that ignores `state` events gets every other event, in
       order with one that ignores nothing.
    2. One subscribed after events of a kind were published gets the next
       ones; one unsubscribed while the bus calls its subscribers gets no more."""
    bus = Bus()
    seen: list[tuple[str, str]] = []

    class Choosy:
        ignores = frozenset({events.StateChanged})

        def __call__(self, event: events.Event) -> None:
            seen.append(("choosy", event.kind))

    def everything(event: events.Event) -> None:
        seen.append(("all", event.kind))

    bus.subscribe(Choosy())
    bus.subscribe(everything)
    bus.publish(events.StateChanged("a", "a", state=State.RUNNING))
    bus.publish(events.Started("a", "a", pid=1))
    assert seen == [("all", "state"), ("choosy", "started"), ("all", "started")]
    seen.clear()

    def late(event: events.Event) -> None:
        seen.append(("late", event.kind))
        bus.unsubscribe(late)

    bus.subscribe(late)
    bus.publish(events.StateChanged("a", "a", state=State.EXITED))
    bus.publish(events.StateChanged("a", "a", state=State.EXITED))
    assert seen == [("all", "state"), ("late", "state"), ("all", "state")]
