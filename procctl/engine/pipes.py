"""A local child's pipes: its stdout and stderr read into the log first and
then, cut into lines, to the callback; its stdin written without waiting.
Both are driven by the event loop's own readers and writers.

A pipe the child keeps full is grown (`FLOOD_PIPE_BYTES`): a flood then costs
a quarter of the wake-ups, reads and writes per MiB, and of the context
switches between the child and the supervisor (docs/profiling.md).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import os
import select

from procctl.engine.child import OutputCallback
from procctl.engine.fdwatch import watch_of
from procctl.engine.lines import LineSplitter
from procctl.engine.logfile import LogFile
from procctl.bus import Flow

READ_CHUNK_BYTES = 256 * 1024
"""Bytes read from a pipe per wake-up (asyncio's pipe transports read as much)."""

STREAMS = {1: "stdout", 2: "stderr"}
"""The name of each output stream by its fd in the child."""

FULL_PIPE_BYTES = 64 * 1024
"""A read this large emptied a full pipe of the kernel's default size: the
child writes faster than it is read (a flood)."""
FLOOD_PIPE_BYTES = READ_CHUNK_BYTES
"""What a flooding child's pipe is grown to. Larger pipes (1 MiB) save a
little more system time but cost more user time than they save: the chunk's
copies no longer fit the processor's cache."""
MAX_GROWN_PIPES = 32
"""Pipes grown at once. The kernel counts pipe buffers per user: past a soft
limit (`/proc/sys/fs/pipe-user-pages-soft`, 64 MiB by default) every new pipe
of that user gets a single page, so the supervisor keeps its share small."""


class _GrownPipes:
    """How many of this process's pipes are grown now (bounded by MAX_GROWN_PIPES)."""

    def __init__(self) -> None:
        self.count = 0

    def grow(self, fd: int) -> bool | None:
        """Grow `fd`'s pipe to FLOOD_PIPE_BYTES: True if it grew, False if
        the kernel refused (EPERM: the user is past its limit), None while
        MAX_GROWN_PIPES are grown (try again later)."""
        if self.count >= MAX_GROWN_PIPES:
            return None
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FLOOD_PIPE_BYTES)
        except OSError:
            return False
        self.count += 1
        return True

    def closed(self) -> None:
        self.count -= 1


GROWN_PIPES = _GrownPipes()


def read_chunk(fd: int, size: int) -> bytes | None:
    """Up to `size` bytes from a pipe (read when it is readable, or non-blocking):
    None when it has nothing now, b"" at its end. A read that fails counts as the end: the pipe can
    give nothing more, and whoever reads it closes it as at EOF."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class Output:
    """The child's stdout and stderr, read straight from the pipes (watched
    through the loop's `fdwatch`, each read once per readiness: our ends are
    blocking, and a pipe that only we read never makes that read wait): each chunk to the log file first, then whole lines
    (`lines.LineSplitter`) to the callback.

    While a slow sink holds the output `flow`, the pipes are not read: the
    child waits on its writes. Once the child has exited they are read
    whatever the flow says, so that its last bytes reach the log and its
    pipes close (what is left is bounded: a pipe's buffer, and what an
    escaped descendant writes before it is killed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fds: dict[int, int], log: LogFile, on_output: OutputCallback, flow: Flow | None) -> None:
        self._loop = loop
        self._watch = watch_of(loop)
        self._log = log
        self._on_output = on_output
        self._flow = flow
        self._fds = dict(fds)
        """Our read end → the child's fd it feeds (1 or 2)."""
        self._splitters = {fd: LineSplitter() for fd in fds}
        self._grown: dict[int, bool] = {}
        """Our read ends whose pipe was grown (True) or could not be (False)."""
        self._paused = False
        self._draining = False
        self.closed: asyncio.Future[None] = loop.create_future()
        for fd in fds:
            self._watch.add(fd, functools.partial(self._read, fd))

    def _read(self, fd: int, events: int) -> None:
        if events == select.EPOLLHUP:
            # Its writers are gone and nothing is left in it: its end, known
            # without a read (the usual end of a silent child's pipe).
            self._close(fd)
            return
        data = read_chunk(fd, READ_CHUNK_BYTES)
        if data is None:
            return
        if not data:
            self._close(fd)
            return
        if len(data) >= FULL_PIPE_BYTES and fd not in self._grown:
            grown = GROWN_PIPES.grow(fd)
            if grown is not None:
                self._grown[fd] = grown
        # The log file first: whatever happens next, the bytes are on disk.
        self._log.write(data)
        lines = self._splitters[fd].feed(data)
        if lines:
            self._on_output(STREAMS[self._fds[fd]], lines)
        if self._flow is not None and self._flow.held and not self._draining:
            self._pause()

    def _pause(self) -> None:
        if self._paused:
            return
        self._paused = True
        for fd in self._fds:
            self._watch.remove(fd)
        assert self._flow is not None
        self._flow.when_released(self._go_on)

    def _go_on(self) -> None:
        if self._paused:
            self._paused = False
            self._watch = watch_of(self._loop)
            for fd in self._fds:
                self._watch.add(fd, functools.partial(self._read, fd))

    def drain(self) -> None:
        """The child has exited: read to the end, held or not."""
        self._draining = True
        self._go_on()

    def _close(self, fd: int) -> None:
        stream = self._fds.pop(fd, None)
        if stream is None:
            return
        if not self._paused:
            self._watch.remove(fd)
        os.close(fd)
        if self._grown.pop(fd, False):
            GROWN_PIPES.closed()
        rest = self._splitters[fd].flush()
        if rest:
            self._on_output(STREAMS[stream], rest)
        if not self._fds and not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Stop reading (an escaped descendant may hold a pipe open for ever)."""
        for fd in list(self._fds):
            self._close(fd)


MAX_PENDING_STDIN_BYTES = 1024 * 1024
"""What `send` may leave waiting for a child that does not read its stdin."""


class Input:
    """The child's stdin: what `send` writes, buffered when the pipe is full
    (up to MAX_PENDING_STDIN_BYTES: a child that never reads cannot make the
    supervisor hold every message sent to it). Our end is made non-blocking
    at the first write, not at the spawn: most children are never sent
    anything."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._pending = bytearray()
        self._nonblocking = False

    def write(self, data: bytes) -> bool:
        if self._fd is None or len(self._pending) + len(data) > MAX_PENDING_STDIN_BYTES:
            return False
        if not self._nonblocking:
            os.set_blocking(self._fd, False)
            self._nonblocking = True
        if not self._pending:
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return False
            if data:
                self._loop.add_writer(self._fd, self._flush)
        self._pending += data
        return True

    def _flush(self) -> None:
        assert self._fd is not None
        try:
            del self._pending[: os.write(self._fd, self._pending)]
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not self._pending:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            if self._pending:
                self._loop.remove_writer(self._fd)
            os.close(self._fd)
            self._fd = None
            self._pending.clear()
