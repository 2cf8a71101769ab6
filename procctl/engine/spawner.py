"""The blocking part of a start, done off the loop's thread.

A spawn blocks its caller until the child has exec'd (vfork), and opening
a log file waits on the disk; on the loop's thread both hold up every
other child, pipe and request. A `Spawner` is a small pool of threads that
does them instead: the loop hands it a call and goes on, and the result (a
started child, and its log's file opened with it when it had one already)
comes back to the loop when it is ready.
`fork_exec` releases the GIL, so two spawns overlap with each other and
with the loop (measured in docs/profiling.md).

A call whose awaiting task is cancelled still runs to its end in its
thread; what it made is then undone there (`undo`: a child killed and
reaped, descriptors closed) — or on the loop, when the cancel came between
the call's end and the loop taking its outcome — so nothing started is ever
lost track of. Closing the spawner waits for every call still running.

A call's outcome reaches the loop through `call_soon_threadsafe`, not
through `concurrent.futures` (its future's condition variable and the
chaining of two futures): 4 % of procctl's CPU in a run of 2000 short jobs
(docs/profiling.md); outcomes that end before the loop takes them share
one wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

THREADS = 4
"""Four spawns at once. A spawner thread waits in vfork until its child has
exec'd, and on a busy machine that waits for the child to get a core: with
two threads the starts queued behind them. 2000 × /bin/true at -j 8 on the
2-core machine, other work running (docs/profiling.md, fourth round): 2
threads 1,063 jobs/s, 4 threads 1,237; 6 and 8 no better than 4. Idle
threads cost their stacks only."""


class Spawner:
    """A few threads for the blocking steps of a start. Until it is entered
    (and after it is closed) a call runs on the caller's thread, so that a
    child made outside a run starts as it always did."""

    def __init__(self, threads: int = THREADS) -> None:
        self._threads = max(1, threads)
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._outbox: _Outbox | None = None

    def __enter__(self) -> Spawner:
        self._workers = [threading.Thread(target=self._work, name=f"procctl-spawn-{i}", daemon=True) for i in range(self._threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        workers, self._workers = self._workers, []
        for _ in workers:
            self._calls.put(None)
        # Every call in flight ends (and is undone if nobody awaits it) first.
        for worker in workers:
            worker.join()

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            call.run()

    async def call(self, fn: Callable[[], T], undo: Callable[[T], None] | None = None) -> T:
        """`fn()` in a spawner thread; its result, or what it raised. If the
        caller is cancelled before it ends, `undo(result)` runs once it does."""
        if not self._workers:
            return fn()
        loop = asyncio.get_running_loop()
        if self._outbox is None or self._outbox.loop is not loop:
            self._outbox = _Outbox(loop)
        call = _Call(fn, undo, self._outbox)
        self._calls.put(call)
        try:
            return await call.future
        except asyncio.CancelledError:
            call.give_up()
            raise


_LOCK = threading.Lock()
"""Between a call's end in its thread and its caller giving up on it."""


class _Outbox:
    """Outcomes on their way to one loop: the loop is woken once for all
    that ended before it took them (each wake-up is a write to its self-pipe
    and a turn of the loop; several spawns often end together)."""

    __slots__ = ("loop", "_outcomes", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._outcomes: collections.deque[tuple[_Call[Any], Any, BaseException | None]] = collections.deque()
        self._scheduled = False

    def put(self, call: _Call[Any], result: object, error: BaseException | None) -> None:
        """In a worker thread."""
        self._outcomes.append((call, result, error))
        # A delivery scheduled and not yet begun takes this one too: it
        # clears the flag before it takes the first outcome.
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            # The loop is closed: nobody will take them.
            self._scheduled = False
            while self._outcomes:
                undone, result, error = self._outcomes.popleft()
                undone.undo_now(result, error)

    def _deliver(self) -> None:
        self._scheduled = False
        outcomes = self._outcomes
        while outcomes:
            call, result, error = outcomes.popleft()
            call.deliver(result, error)


class _Call(Generic[T]):
    """One call: run in a worker, its outcome handed to the loop through its
    outbox (no concurrent.futures machinery: a start is two hand-offs at most)."""

    __slots__ = ("fn", "undo", "outbox", "future", "ended", "given_up")

    def __init__(self, fn: Callable[[], T], undo: Callable[[T], None] | None, outbox: _Outbox) -> None:
        self.fn, self.undo, self.outbox = fn, undo, outbox
        self.future: asyncio.Future[T] = outbox.loop.create_future()
        self.ended = self.given_up = False

    def run(self) -> None:
        """In a worker thread."""
        error: BaseException | None = None
        result: T | None = None
        try:
            result = self.fn()
        except BaseException as exc:
            error = exc
        with _LOCK:
            self.ended = True
            given_up = self.given_up
        if given_up:
            self.undo_now(result, error)
        else:
            self.outbox.put(self, result, error)

    def undo_now(self, result: object, error: BaseException | None) -> None:
        if error is None and self.undo is not None:
            self.undo(result)  # type: ignore[arg-type]

    def give_up(self) -> None:
        """On the loop: the caller was cancelled. A call still running is
        undone in its thread when it ends; one that has ended is undone as
        its outcome arrives (`deliver`)."""
        with _LOCK:
            self.given_up = True

    def deliver(self, result: T, error: BaseException | None) -> None:
        """On the loop."""
        if self.future.done():
            # Cancelled after the call ended, before this: undone here.
            self.undo_now(result, error)
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)
