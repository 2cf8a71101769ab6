"""The children's descriptors watched through one: every local child's
output pipes and pidfd sit in an epoll of their own, which the event loop
watches as a single reader.

Each child has three descriptors to watch (stdout, stderr, its pidfd), and
asyncio's `add_reader`/`remove_reader` cost more Python than anything else a
short job does on the loop's thread (a selector key, a handle and a lookup
each way, and one turn of the loop per ready descriptor): 14 % of the loop's
profile in a run of 2000 × /bin/true (docs/profiling.md). Here a descriptor
costs one `epoll_ctl` each way and a dictionary entry, and the descriptors
that became ready together are handled in one turn.

The inner epoll is level-triggered like the loop's own: a descriptor whose
handler reads nothing (a paused pipe is removed instead) is reported again.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

IDLE_CLOSE_S = 1.0
"""How long after it first watches nothing a watch looks again, and closes if
it still watches nothing. A pool of short jobs often has none for a moment
(each next child is still being spawned): closing it one turn of the loop
after it became empty made and closed an epoll 1,382 times in a run of 2000
jobs."""

_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FdWatch] = weakref.WeakKeyDictionary()


def watch_of(loop: asyncio.AbstractEventLoop) -> FdWatch:
    """The loop's watch, made at its first descriptor."""
    watch = _watches.get(loop)
    if watch is None or watch.closed:
        watch = _watches[loop] = FdWatch(loop)
    return watch


class FdWatch:
    """Descriptors → a handler each, called on the loop's thread with the
    epoll events of the descriptor when it is readable or at its end (a
    hang-up: `select.EPOLLHUP` without `EPOLLIN` means nothing is left to read).
    Its epoll closes once it watches nothing (looked at IDLE_CLOSE_S after
    it first did), so that a loop that stops spawning holds no descriptor of it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._epoll: select.epoll | None = select.epoll()
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._closing = False
        loop.add_reader(self._epoll.fileno(), self._ready)

    @property
    def closed(self) -> bool:
        return self._epoll is None

    def __len__(self) -> int:
        return len(self._handlers)

    def add(self, fd: int, handler: Callable[[int], None]) -> None:
        assert self._epoll is not None and fd not in self._handlers
        self._epoll.register(fd, select.EPOLLIN)
        self._handlers[fd] = handler

    def remove(self, fd: int) -> None:
        """Stop watching `fd` (before it is closed)."""
        if self._handlers.pop(fd, None) is None or self._epoll is None:
            return
        self._epoll.unregister(fd)
        if not self._handlers and not self._closing:
            loop = self._loop()
            if loop is not None and not loop.is_closed():
                self._closing = True
                loop.call_later(IDLE_CLOSE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._closing = False
        if self._handlers or self._epoll is None:
            return
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._epoll.fileno())
        self._epoll.close()
        self._epoll = None

    def _ready(self) -> None:
        assert self._epoll is not None
        handlers = self._handlers
        for fd, events in self._epoll.poll(0):
            # (A handler may have removed a descriptor that was ready with it.)
            handler = handlers.get(fd)
            if handler is None:
                continue
            try:
                handler(events)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler({"message": "Exception in a descriptor's handler", "exception": exc})
