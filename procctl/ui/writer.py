"""Writing to stdout, stderr or a report file without ever blocking the event
loop: the one way every sink writes.

A `Writer` writes what it can at once and keeps the rest until its stream
can take more (the loop tells it), so a slow or stuck reader (a pipe nobody
reads, a terminal held with Ctrl-S) never stalls the loop: the control
socket answers and timers run. What it keeps is bounded: past
HIGH_WATER_BYTES it holds the bus's output flow, so that the engine stops
reading the children's pipes (they wait on their writes, as on a slow
terminal) until it is back under LOW_WATER_BYTES. Nothing is dropped. Once
the reader is gone (a closed pipe) the writer stops writing and the run goes
on; the log files are complete either way.

What is written during one turn of the event loop goes out as one write
when the turn's callbacks are done, before the loop next waits (a run of
short jobs prints two lines a job, often several in one turn: one system
call each cost the loop's thread as much as formatting them). Nothing waits
longer than that, so a CI log stays live and in order; a large piece
(BATCH_BYTES) is written at once, after what came before it.

Writes that cannot wait need a descriptor of their own in non-blocking mode:
setting O_NONBLOCK on the stdout procctl was given would change it for the
shell and every other process sharing it. A pipe or a terminal is opened
again through /proc/self/fd (a description of our own), a socket is written
with MSG_DONTWAIT; a regular file never keeps a writer waiting and is
written as it is.
"""

from __future__ import annotations

import asyncio
import collections
from asyncio import _get_running_loop
import errno
import os
import socket
import stat
from collections.abc import Callable
from typing import IO, BinaryIO

from procctl.bus import Flow

HIGH_WATER_BYTES = 4 << 20
"""Bytes kept for a slow reader past which the children's output waits."""
LOW_WATER_BYTES = 1 << 20
"""...and under which it flows again."""
BATCH_BYTES = 64 << 10
"""Bytes of one turn gathered into one write, at most: past them they are
written at once (a flood's pieces are larger and never wait)."""
_COPY_BYTES = 1 << 16

Send = Callable[[bytes], int]


def _without_waiting(out: BinaryIO) -> tuple[Send, Callable[[bool], None], Callable[[], None], int] | None:
    """(write without waiting, set it blocking or not, close it, the descriptor
    to watch), or None when `out` is written as it is (a regular file, a
    stream without a descriptor, a system without /proc)."""
    try:
        fd = out.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISSOCK(mode):
        sock = socket.socket(fileno=os.dup(fd))

        def send(data: bytes) -> int:
            return sock.send(data, 0 if sock.getblocking() else socket.MSG_DONTWAIT)

        return send, sock.setblocking, sock.close, sock.fileno()
    try:
        own = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    return (lambda data: os.write(own, data)), (lambda blocking: os.set_blocking(own, blocking)), (lambda: os.close(own)), own


_GONE = (errno.EPIPE, errno.EIO, errno.ECONNRESET, errno.ENXIO)
"""Errors that mean the reader went away (a closed pipe, a closed terminal),
as against a stream that failed (a full disk under a log file)."""


class Writer:
    def __init__(self, out: BinaryIO, flow: Flow | None = None, on_gone: Callable[[], None] | None = None) -> None:
        self._out = out
        self._flow = flow
        self._on_gone = on_gone
        """Told once, when the reader goes away (not when a file fails)."""
        out.flush()  # What was written before goes first.
        self._own = _without_waiting(out)
        self._queue: collections.deque[bytes | IO[bytes]] = collections.deque()
        self._pending = 0
        """Bytes kept for the reader (a spooled file is not counted: it is on disk)."""
        self._holding = False
        self._watched: asyncio.AbstractEventLoop | None = None
        """The loop that tells us when the stream can take more, while it does."""
        self.broken = False
        """True once the reader went away (a closed pipe): nothing more is written."""
        self._turn: list[bytes] = []
        """What this turn of the loop gave, written together at its end."""
        self._turn_bytes = 0
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        """The loop that will write `_turn` (its call is scheduled there)."""

    @property
    def pending(self) -> int:
        """Bytes the stream could not take yet (this turn's, written before
        the loop waits, are not counted)."""
        return self._pending

    def __call__(self, data: bytes) -> None:
        """Write `data` soon (by the end of this turn of the loop; at once
        without a running loop), in order with what came before. Never waits
        on the loop's thread."""
        if self.broken or not data:
            return
        loop = _get_running_loop()
        if loop is None or len(data) >= BATCH_BYTES:
            self.flush()
            self._now(data)
            return
        if loop is not self._turn_loop:
            self.flush()  # (gathered on a loop that is gone: never left behind)
            loop.call_soon(self._end_of_turn)
            self._turn_loop = loop
        self._turn.append(data)
        self._turn_bytes += len(data)
        if self._turn_bytes >= BATCH_BYTES:
            self.flush()

    def _end_of_turn(self) -> None:
        self._turn_loop = None
        self.flush()

    def flush(self) -> None:
        """Write what this turn gave now."""
        turn = self._turn
        if not turn:
            return
        data = turn[0] if len(turn) == 1 else b"".join(turn)
        self._turn = []
        self._turn_bytes = 0
        if not self.broken:
            self._now(data)

    def _now(self, data: bytes) -> None:
        if self._own is None:
            self._direct(data)
            return
        if not self._queue:
            written = self._send(data)
            if written is None or written == len(data):
                return
            data = data[written:]
        self._keep(data, len(data))

    def copy(self, spool: IO[bytes]) -> None:
        """Write the whole of `spool` (from its start), then close it."""
        self.flush()
        spool.seek(0)
        if self.broken or self._own is None:
            while not self.broken and (chunk := spool.read(_COPY_BYTES)):
                self._direct(chunk)
            spool.close()
            return
        self._keep(spool, 0)

    def _direct(self, data: bytes) -> None:
        try:
            self._out.write(data)
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:
            self.broken = True
            self._gone(exc)

    def _send(self, data: bytes) -> int | None:
        """Bytes written without waiting; None when the writer broke."""
        assert self._own is not None
        try:
            return self._own[0](data)
        except BlockingIOError:
            return 0
        except (BrokenPipeError, ValueError, OSError) as exc:
            self._break()
            self._gone(exc)
            return None

    def _gone(self, exc: Exception) -> None:
        if self._on_gone is not None and (isinstance(exc, ValueError) or getattr(exc, "errno", None) in _GONE):
            on_gone, self._on_gone = self._on_gone, None
            on_gone()

    def _keep(self, item: bytes | IO[bytes], size: int) -> None:
        self._queue.append(item)
        self._pending += size
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drain(blocking=True)  # No loop to wait with (before or after the run).
            return
        if self._watched is None:
            assert self._own is not None
            loop.add_writer(self._own[3], self._drain)
            self._watched = loop
        if self._flow is not None and not self._holding and self._pending > HIGH_WATER_BYTES:
            self._holding = True
            self._flow.hold()

    def _drain(self, blocking: bool = False) -> None:
        """Write what was kept, as far as the stream takes it."""
        own = self._own
        assert own is not None
        if blocking:
            own[1](True)
        try:
            while self._queue and not self.broken:
                item = self._queue[0]
                if isinstance(item, bytes):
                    written = self._send(item)
                    if written is None:
                        break
                    self._pending -= written
                    if written < len(item):
                        self._queue[0] = item[written:]
                        break
                    self._queue.popleft()
                    continue
                chunk = item.read(_COPY_BYTES)
                if not chunk:
                    item.close()
                    self._queue.popleft()
                    continue
                self._queue.appendleft(chunk)
                self._pending += len(chunk)
        finally:
            if blocking and not self.broken:
                own[1](False)
        if not self._queue:
            self._unwatch()
        if self._holding and self._pending < LOW_WATER_BYTES:
            self._holding = False
            assert self._flow is not None
            self._flow.release()

    def _unwatch(self) -> None:
        if self._watched is not None:
            assert self._own is not None
            if not self._watched.is_closed():
                self._watched.remove_writer(self._own[3])
            self._watched = None

    def _break(self) -> None:
        self.broken = True
        self._unwatch()
        for item in self._queue:
            if not isinstance(item, bytes):
                item.close()
        self._queue.clear()
        self._pending = 0

    def close(self) -> None:
        """Write what is left, waiting for the reader (at the end of the run)."""
        self.flush()
        if self._own is None:
            return
        self._unwatch()
        if self._queue and not self.broken:
            self._drain(blocking=True)
        # (A flow still held stays so: nothing reads the children any more.)
        self._own[2]()
        self._own = None


class TextFile:
    """A text stream (for rich's Console) that writes through a `Writer`."""

    def __init__(self, writer: Writer, real: IO[str]) -> None:
        self._writer = writer
        self._real = real
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        self._writer(text.encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()
