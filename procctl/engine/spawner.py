"""The blocking part of a start, done off the loop's thread.

A spawn blocks its caller until the child has exec'd (vfork), and creating
a log file blocks on the disk; on the loop's thread both hold up every
other child, pipe and request. A `Spawner` is a small pool of threads that
does them instead: the loop hands it a call and goes on, and the result (a
started child, its log's file opened with it at its first start) comes back
to the loop when it is ready.
`fork_exec` releases the GIL, so two spawns overlap with each other and
with the loop (measured in docs/profiling.md).

A call whose awaiting task is cancelled still runs to its end in its
thread; what it made is then undone there (`undo`: a child killed and
reaped, descriptors closed), so nothing started is ever lost track of.
Closing the spawner waits for every call still running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

THREADS = 2
"""Two spawns at once: on a 2-core machine a third thread gained nothing
(docs/profiling.md), and each costs its stack while the run lasts."""


class Spawner:
    """A few threads for the blocking steps of a start. Until it is entered
    (and after it is closed) a call runs on the caller's thread, so that a
    child made outside a run starts as it always did."""

    def __init__(self, threads: int = THREADS) -> None:
        self._threads = max(1, threads)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __enter__(self) -> Spawner:
        self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="procctl-spawn")
        return self

    def __exit__(self, *exc: object) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Every spawn in flight ends (and is undone if nobody awaits it) first.
            pool.shutdown(wait=True)

    async def call(self, fn: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
        """`fn()` in a spawner thread; its result, or what it raised. If the
        caller is cancelled before it ends, `undo(result)` runs once it does."""
        pool = self._pool
        if pool is None:
            return fn()
        future = pool.submit(fn)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if undo is not None:
                future.add_done_callback(lambda done: _undo(done, undo))
            raise


def _undo(done: concurrent.futures.Future[T], undo: Callable[[T], None]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    undo(done.result())
