"""The pool: who may start now.

Jobs (`each` instances, processes that opt in) take a slot; a service takes
none, and waits only while the queue is held (`pause --all`).

A bounded set of slots, like an asyncio.Semaphore, with three additions:
waiters leave in priority order (FIFO, or longest predicted job first), a
waiter may carry a predicted peak RSS that must fit in available memory
(memory-aware admission), and in `auto` mode the number of slots follows the
machine's CPU and memory headroom (never above the hard cap of -j).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from procctl.engine.lazypsutil import psutil

AUTO_TICK_S = 0.5
"""How often `auto` looks at the machine's load."""
CPU_HIGH_PERCENT = 90.0
"""Above this system-wide CPU use, `auto` lets no new job start and shrinks."""
CPU_ROOM_PERCENT = 75.0
"""Below this, a saturated `auto` pool grows by one slot per tick."""
UNBOUNDED = -1
"""The ticket of an instance the pool does not bound (a service)."""


def available_memory() -> int:
    return psutil.virtual_memory().available


def system_cpu_percent() -> float:
    return psutil.cpu_percent(interval=None)


@dataclass
class _Waiter:
    priority: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)
    rss_bytes: int | None = field(compare=False, default=None)
    name: str = field(compare=False, default="")
    ticket: int = field(compare=False, default=-1)
    """Set when admitted."""


class Pool:
    def __init__(
        self,
        size: int,
        *,
        auto: bool = False,
        cap: int | None = None,
        min_free_bytes: int = 0,
        memory_probe: Callable[[], int] = available_memory,
        cpu_probe: Callable[[], float] = system_cpu_percent,
        on_warning: Callable[[str, str], None] | None = None,
        on_resize: Callable[[], None] | None = None,
        ordered: bool = True,
    ) -> None:
        self.auto = auto
        self.ordered = ordered
        """Waiters may carry different priorities (longest-first): those that
        ask in the same turn of the loop are gathered before any is let in.
        Without, the order is arrival's, and one that finds a free slot and
        nobody waiting takes it at once."""
        self.cap = cap if cap is not None else size
        """Hard limit: never more running than this, auto or not."""
        self.limit = min(size, self.cap)
        """Slots in force now (in auto mode it moves between 1 and cap)."""
        self.min_free_bytes = min_free_bytes
        self._memory = memory_probe
        self._cpu = cpu_probe
        self._warn = on_warning or (lambda name, message: None)
        self._on_resize = on_resize or (lambda: None)
        self.running = 0
        """Jobs holding a slot."""
        self.held = False
        self._unheld: asyncio.Event | None = None
        """Set while the queue is not held (made on first use: it needs the loop)."""
        self._waiters: list[tuple[float, int, _Waiter]] = []
        """A heap of (priority, arrival, waiter): ordered by tuples' own
        comparison, not the dataclass's in Python (ten of them a job)."""
        self._seq = itertools.count()
        self._ticker: asyncio.Task[None] | None = None
        self._reserved: dict[int, int] = {}
        """Per admitted job with a predicted peak RSS: the part of it not yet
        in use (so not yet missing from available memory). Taken at
        admission, before the job's task even resumes: jobs admitted in the
        same dispatch must see each other's share."""
        self._predicted: dict[int, int] = {}
        self._admitted_ids = itertools.count()
        self._dispatch_pending = False

    # ------------------------------------------------------------ waiting

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, w in self._waiters if not w.future.done())

    async def enter(self) -> int:
        """Wait only while the queue is held: an instance the pool does not bound."""
        while self.held:
            if self._unheld is None:
                self._unheld = asyncio.Event()
            await self._unheld.wait()
        return UNBOUNDED

    async def acquire(self, *, priority: float = 0.0, rss_bytes: int | None = None, name: str = "") -> int:
        """Wait for a slot. Lower priority values leave first; equal ones in
        arrival order. Returns a ticket for `release`."""
        if not self.ordered and not rss_bytes and self._free_now():
            # Nobody waits and nobody asking later in this turn could come
            # first: in without a future, a queue entry or a turn of the
            # loop (2000 jobs asking at a run's start used to wait for all
            # of them to have asked before the first spawn).
            self._ensure_ticker(None)
            self.running += 1
            return next(self._admitted_ids)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(priority, next(self._seq), future, rss_bytes, name)
        heapq.heappush(self._waiters, (waiter.priority, waiter.seq, waiter))
        self._ensure_ticker(rss_bytes)
        if not self.held and self.running < self.limit:
            # (A full or held pool lets waiters in where it frees or opens:
            # a release, a resize, the ticker. A big pool's feeder asks once
            # an item, nearly always of a full pool.)
            self._dispatch_soon()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Admitted just as we were cancelled: give the slot back.
                self.release(waiter.ticket)
            raise
        return waiter.ticket

    def release(self, ticket: int | None = None) -> None:
        if ticket == UNBOUNDED:
            return
        self.running -= 1
        if ticket is not None:
            self._reserved.pop(ticket, None)
            self._predicted.pop(ticket, None)
        self._dispatch()

    def grown(self, ticket: int, rss_bytes: int) -> None:
        """The job's tree now holds `rss_bytes`: only the rest of its
        predicted peak stays reserved (what it holds is already missing from
        available memory, and must not count twice)."""
        predicted = self._predicted.get(ticket)
        if predicted is not None:
            self._reserved[ticket] = max(predicted - rss_bytes, 0)

    def set_size(self, size: int) -> None:
        """`procctl pool N`: N slots from now on (under auto, N is the cap
        the slots move under). Jobs running past a smaller size go on; no
        new one starts until they are under it."""
        self.cap = size
        self.limit = min(self.limit, size) if self.auto else size
        self._on_resize()
        self._dispatch()

    def hold(self, held: bool) -> None:
        self.held = held
        if self._unheld is not None:
            if held:
                self._unheld.clear()
            else:
                self._unheld.set()
        self._dispatch()

    # ------------------------------------------------------------ admission

    def _fits(self, waiter: _Waiter) -> bool:
        if not waiter.rss_bytes:
            return True
        free = self._memory() - self.min_free_bytes - sum(self._reserved.values())
        if waiter.rss_bytes <= free:
            return True
        if self.running == 0:
            # Bigger than what is free even with nothing else running: let it
            # run alone rather than wait forever.
            self._warn(waiter.name, f"predicted peak RSS {waiter.rss_bytes >> 20} MiB exceeds available memory; running it alone")
            return True
        return False

    def _free_now(self) -> bool:
        """A slot is free and no waiter is left to take it."""
        if self.held or self.running >= self.limit or self._dispatch_pending:
            return False
        self._drop_given_up()
        return not self._waiters

    def _drop_given_up(self) -> None:
        """Waiters at the head whose wait is over (cancelled) leave the queue."""
        while self._waiters and self._waiters[0][2].future.done():
            heapq.heappop(self._waiters)

    def _dispatch_soon(self) -> None:
        # Jobs that queue up in the same turn of the loop (the start of a run)
        # are ordered by priority before any of them is let in.
        if not self._dispatch_pending:
            self._dispatch_pending = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_pending = False
        self._drop_given_up()
        while not self.held and self._waiters and self.running < self.limit:
            head = self._waiters[0][2]
            if head.future.done():
                heapq.heappop(self._waiters)
                continue
            if not self._fits(head):
                # Later waiters wait too: letting small jobs pass would starve
                # the big one indefinitely.
                return
            heapq.heappop(self._waiters)
            self.running += 1
            head.ticket = next(self._admitted_ids)
            if head.rss_bytes:
                self._reserved[head.ticket] = self._predicted[head.ticket] = head.rss_bytes
            head.future.set_result(None)

    # ------------------------------------------------------------ auto

    def _ensure_ticker(self, rss_bytes: int | None) -> None:
        # Only the new waiter needs checking: the ticker runs while any
        # waiter is left, so earlier memory-bound ones already started it.
        # (Scanning every waiter here cost O(n²) for a queue of 2000 jobs.)
        needs_ticks = self.auto or bool(rss_bytes)
        if needs_ticks and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        self._cpu()  # the first reading only sets psutil's baseline
        while self._waiters or self.running:
            await asyncio.sleep(AUTO_TICK_S)
            if self.auto:
                self._adapt(self._cpu(), self._memory())
            self._dispatch()

    def _adapt(self, cpu_percent: float, available: int) -> None:
        """Additive increase while there is room, decrease under pressure."""
        before = self.limit
        pressure = cpu_percent > CPU_HIGH_PERCENT or available < self.min_free_bytes
        if pressure:
            self.limit = max(1, min(self.limit, self.running) - 1)
        elif cpu_percent < CPU_ROOM_PERCENT and self.running >= self.limit and self.waiting:
            self.limit = min(self.cap, self.limit + 1)
        if self.limit != before:
            self._on_resize()

    def resize(self, size: int, *, cap: int, auto: bool) -> None:
        """New bounds (a reload): the running jobs keep their slots; new ones
        start while fewer run than the new size."""
        self.auto = auto
        self.cap = cap
        self.limit = min(size, cap)
        if self._waiters:
            self._dispatch_soon()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
