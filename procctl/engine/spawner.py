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

A fork copies the caller's table of descriptors, so once the table is
large (`APART_FROM_FD`) a start that needs nothing of it (`call_apart`)
runs on a worker with a table of its own (engine/spawnapart.py).
"""

from __future__ import annotations

import asyncio
import collections
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from procctl.engine.spawnapart import ApartWorkers

T = TypeVar("T")

THREADS = 4
"""Four spawns at once. A spawner thread waits in vfork until its child has
exec'd, and on a busy machine that waits for the child to get a core: with
two threads the starts queued behind them. 2000 × /bin/true at -j 8 on the
2-core machine, other work running (docs/profiling.md, fourth round): 2
threads 1,063 jobs/s, 4 threads 1,237; 6 and 8 no better than 4. Idle
threads cost their stacks only."""


APART_FROM_FD = 512
"""A table this large costs a fork more than handing a start's descriptors
over costs (about 0.1 ms a thousand descriptors against ~20 µs)."""

FDS_PER_START = 4
"""What a start adds to the table (three pipes and a pidfd): the starts
under way make it larger by the time the last of them forks."""

FD_RESERVE = 64
"""Descriptors the starts leave free for the supervisor's own work (a log
file, a look at /proc, a module imported, a control client): at its limit
of open files, a start that would take them fails instead (`has_room`)."""


class Spawner:
    """A few threads for the blocking steps of a start. Until it is entered
    (and after it is closed) a call runs on the caller's thread, so that a
    child made outside a run starts as it always did."""

    def __init__(self, threads: int = THREADS) -> None:
        self._threads = max(1, threads)
        self._calls: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._outbox: _Outbox | None = None
        self._apart: ApartWorkers | None = None
        self.table_size = 0
        """How large the table was last seen: the highest descriptor of the
        last start (`saw`), or, near the limit, how many are open (`has_room`)."""
        self._under_way = 0
        """Calls made and not yet returned (or given up)."""
        self._fd_limit = 1 << 20
        """The limit of open files, as it is when the spawner is entered."""

    def saw(self, fds: tuple[int, ...]) -> None:
        """A start's descriptors, just made: the table is at least this large."""
        if fds:
            self.table_size = max(fds)

    def has_room(self) -> bool:
        """Whether one more start leaves `FD_RESERVE` descriptors free, with
        what the starts under way will take. The table is counted
        (/proc/self/fd) only when the last start saw it near the limit."""
        needed = FDS_PER_START * (self._under_way + 1) + FD_RESERVE
        if self.table_size + needed < self._fd_limit:
            return True
        try:
            self.table_size = len(os.listdir("/proc/self/fd"))
        except OSError:
            return False
        return self.table_size + needed < self._fd_limit

    @property
    def crowded(self) -> bool:
        """Whether a start that can should run apart (`call_apart`): the
        table as the last start saw it, and what the starts under way add.
        (Three thousand services started at once are all under way before
        the first has forked.)"""
        return bool(self._workers) and self.table_size + FDS_PER_START * self._under_way >= APART_FROM_FD

    def __enter__(self) -> Spawner:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._fd_limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
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
        apart, self._apart = self._apart, None
        if apart is not None:
            apart.close()

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
        return await self._outcome(call)

    async def _outcome(self, call: _Call[T]) -> T:
        """The call's result, once its worker is done; a cancel gives it up."""
        self._under_way += 1
        try:
            return await call.future
        except asyncio.CancelledError:
            call.give_up()
            raise
        finally:
            self._under_way -= 1

    async def call_apart(
        self, fn: Callable[[], tuple[T, tuple[int, ...]]], rebuild: Callable[[T, tuple[int, ...]], T], undo: Callable[[T], None] | None = None
    ) -> T:
        """`fn()` on a worker with a table of descriptors of its own. `fn`
        must use no descriptor it did not make, and returns its result and
        the descriptors it made for the caller: they are handed to the
        caller's table (closed in the worker's) and `rebuild(result, fds)`
        gives the result with their new numbers. `undo` as for `call`, with
        whichever numbers the result has where it runs. Without workers
        (not entered) it runs here and nothing is handed."""
        if not self._workers:
            return fn()[0]
        loop = asyncio.get_running_loop()
        if self._apart is None or self._apart.loop is not loop:
            # (Loaded with the first start made apart: most runs never make one.)
            from procctl.engine.spawnapart import ApartWorkers

            if self._apart is not None:
                self._apart.close()
            self._apart = ApartWorkers(loop, self._threads, self._fd_limit)
        call = _Call(fn, undo, self._apart)  # type: ignore[arg-type]
        call.rebuild = rebuild
        self._apart.calls.put(call)
        return await self._outcome(call)


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

    __slots__ = ("fn", "undo", "outbox", "future", "ended", "given_up", "rebuild")

    def __init__(self, fn: Callable[[], T], undo: Callable[[T], None] | None, outbox: _Outbox | ApartWorkers) -> None:
        self.fn, self.undo, self.outbox = fn, undo, outbox
        self.future: asyncio.Future[T] = outbox.loop.create_future()
        self.ended = self.given_up = False
        self.rebuild: Callable[[T, tuple[int, ...]], T] | None = None

    def run(self) -> None:
        """In a worker thread."""
        error: BaseException | None = None
        result: T | None = None
        try:
            result = self.fn()
        except BaseException as exc:
            error = exc
        if self.end():
            self.undo_now(result, error)
        else:
            self.outbox.put(self, result, error)  # type: ignore[union-attr]

    def end(self) -> bool:
        """In its worker, once `fn` is done: whether the caller gave up
        meanwhile (then the worker undoes what it made)."""
        with _LOCK:
            self.ended = True
            return self.given_up

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
