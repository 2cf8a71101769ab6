"""The one writer of an instance's log file.

Every byte a child writes goes here before anything else sees it. A disk
that refuses the bytes (full: ENOSPC, EDQUOT; failing: EIO; an immutable
file: EPERM; a size limit: EFBIG) never costs the screen or the event stream
its output, and never an exception on the loop: the writer says once that the
log stopped taking writes, keeps trying each chunk (a refused write costs one
system call), counts what the log did not get, and says once more when the
log takes writes again.

A log rotates by size (`log_max_size`): before a chunk that would take the
file past it, the file is renamed `NAME.log.1` (older ones move up to
`log_keep`, the oldest is dropped) and a new `NAME.log` takes the chunk.
Chunks are never split, so no byte is lost across a rotation, and reading
the files oldest first gives the output as written.

Beside each log file, its time index (`NAME.log.idx`, rotated with it) says
when each piece arrived: `logs --since`, `--timestamps` and the order of
procctl's own events among the lines come from it (see `logindex`).

The file itself is made with its first byte, and its index with its first
mark: an instance that writes nothing leaves neither. Making a file (an
inode, a directory entry) is most of what a silent job's start costs the
disk: a tenth of all the CPU time of a run of 2000 × /bin/true went to
making their logs (docs/profiling.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from procctl.engine.logindex import MARK_EVERY_S, QUIET_S, RECORD

LogTrouble = Callable[["OSError | None", int], None]
"""(the error that stopped the log, or None once it takes writes again;
every byte of output the log has not got so far) → None; must not block."""

Opener = Callable[[bool], int]
"""(create) → a descriptor of the log's file, opened for appending (and
truncated at the first start of a run). Without `create`, -1 when there is
no file yet; raises what the caller of `open_file` is to get (SpawnError).
With it, the file is made if need be; raises OSError."""

Rotate = Callable[[], int]
"""Renames the log and its index to their `.1` names (older ones move up,
the oldest goes) and opens a new log: its descriptor."""

_OPENING = threading.Lock()
"""Between a file opened on a spawner thread (`open_file`) and the log's
close on the loop's: a log closed first never keeps the file."""

OpenIndex = Callable[[bool], int]
"""(truncate) → the descriptor of the time index of the log's current file,
made now; -1 when it cannot be (the file then goes without marks)."""


class LogFile:
    """The one writer of an instance's log: each chunk written whole, as the
    child wrote it. A write the file refuses (ENOSPC, EDQUOT, EIO, EFBIG,
    EPERM on an immutable file) never stops the output on its way to the
    screen: `on_trouble` is told once when the log stops taking writes, and
    once when it takes them again; meanwhile every chunk is tried (a
    failing write costs one system call) and what it lost is counted."""

    __slots__ = (
        "fd", "_opener", "_closed", "on_trouble", "lost_bytes", "failing", "position", "_index_fd", "_open_index", "_index_truncate", "_rotate",
        "max_bytes", "_file_bytes", "_index_bytes", "_marked_at", "_wrote_at", "_on_rotate_error", "_opens_empty",
    )  # fmt: skip

    def __init__(
        self,
        fd: int = -1,
        on_trouble: LogTrouble | None = None,
        *,
        opener: Opener | None = None,
        open_index: OpenIndex | None = None,
        truncate_index: bool = True,
        rotate: Rotate | None = None,
        max_bytes: int | None = None,
        on_rotate_error: Callable[[OSError], None] | None = None,
        opens_empty: bool = False,
    ) -> None:
        self.fd = fd
        self._opener = opener
        """Opens its file, when it was made without one (see `open_file`)."""
        self._opens_empty = opens_empty
        """The opener's file is empty (truncated or new): no need to ask its size."""
        self._closed = False
        self.on_trouble = on_trouble
        self.lost_bytes = 0
        """Output the log did not get (since this writer was made)."""
        self.failing = False
        self.position = 0
        """Bytes written to this log since it was made, across rotations: where
        the next byte goes in the instance's output (procctl's events say
        where they happened by it)."""
        self._index_fd = -1
        self._open_index = open_index
        """Makes the current file's index at its first mark (None: no index)."""
        self._index_truncate = truncate_index
        """Whether that index starts empty (a log appended to keeps its marks)."""
        self._rotate = rotate
        self.max_bytes = max_bytes if rotate is not None else None
        """Rotate before a chunk would take the file past this; None: never."""
        self._file_bytes = self._size_of(fd)
        self._index_bytes = 0
        self._marked_at = self._wrote_at = float("-inf")
        self._on_rotate_error = on_rotate_error

    @staticmethod
    def _size_of(fd: int) -> int:
        try:
            return os.fstat(fd).st_size if fd >= 0 else 0
        except OSError:
            return 0

    def open_file(self) -> None:
        """At each start, just before the spawn and on the thread that spawns:
        a file the log has already (a restart's, or one left where this run
        begins) is opened now, so that one that cannot be fails this start
        (raises what the opener raises). A file not there yet is made with
        the first byte (`write`). If the log was closed meanwhile (its start
        given up), the file is closed again at once."""
        if self.fd >= 0 or self._opener is None:
            return
        self._adopt(self._opener(False))

    def _adopt(self, fd: int) -> None:
        if fd < 0:
            return
        size = 0 if self._opens_empty else self._size_of(fd)
        with _OPENING:
            if not self._closed:
                self.fd, self._file_bytes, fd = fd, size, -1
        if fd >= 0:
            os.close(fd)

    def _make(self) -> OSError | None:
        """The file, made for the first byte (on the loop's thread); the error
        when it cannot be (the log then refuses this chunk, and tries again
        with the next)."""
        if self._opener is None or self._closed:
            return None  # (a write to no descriptor fails as any refused write)
        try:
            self._adopt(self._opener(True))
        except OSError as exc:
            return exc
        return None

    def write(self, data: bytes) -> None:
        if self.fd < 0:
            error = self._make()
            if error is not None:
                self._refused(error, len(data))
                return
        if self.max_bytes is not None and self._file_bytes and (
            self._file_bytes + len(data) > self.max_bytes or self._index_bytes >= self.max_bytes // 4
        ):
            self._rotate_now()
        if self._open_index is not None:
            self._mark()
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
                self.position += written
                self._file_bytes += written
        except OSError as exc:
            self._refused(exc, len(view))
            return
        if self.failing:
            self.failing = False
            if self.on_trouble is not None:
                self.on_trouble(None, self.lost_bytes)

    def _refused(self, error: OSError, lost: int) -> None:
        self.lost_bytes += lost
        if not self.failing:
            self.failing = True
            if self.on_trouble is not None:
                self.on_trouble(error, self.lost_bytes)

    def _mark(self) -> None:
        """A record of when the next chunk arrived: for a file's first chunk,
        for the first after a pause (QUIET_S without output), and otherwise
        at most every MARK_EVERY_S (a flood's index stays small)."""
        now = time.time()
        paused = now - self._wrote_at >= QUIET_S
        self._wrote_at = now
        if self._file_bytes and not paused and now - self._marked_at < MARK_EVERY_S:
            return
        if self._index_fd < 0:
            self._index_fd = self._open_index(self._index_truncate) if self._open_index is not None else -1
            if self._index_fd < 0:
                return  # The file goes without marks until a later one can make its index.
        try:
            os.write(self._index_fd, RECORD.pack(self.position, now))
        except OSError:
            return  # A missing mark costs a line's time a little precision, never output.
        self._marked_at = now
        self._index_bytes += RECORD.size

    def _rotate_now(self) -> None:
        assert self._rotate is not None
        try:
            fd = self._rotate()
        except OSError as exc:
            # The file keeps growing under its new name or its old one; no
            # byte is lost, and the log no longer rotates this run.
            self.max_bytes = None
            if self._on_rotate_error is not None:
                self._on_rotate_error(exc)
            return
        self._close_fds()
        self.fd = fd
        self._file_bytes = self._index_bytes = 0
        self._index_truncate = True

    def _close_fds(self) -> None:
        for fd in (self.fd, self._index_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._index_fd = -1

    def close(self) -> None:
        with _OPENING:
            self._closed = True
        self._close_fds()
