"""How events travel from the engine to its subscribers.

The engine publishes on a `Bus`; each subscriber is a plain callable that must
return at once. A subscriber that renders slowly buffers through `EventQueue`,
which is bounded and drops the oldest output first (counting what it dropped),
so the engine never waits on a UI; a sink that cannot keep up with the
children's output holds the bus's `Flow`, and the engine stops reading their
pipes until it lets go.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from procctl.events import Event, Output

Subscriber = Callable[[Event], None]


class Flow:
    """Back-pressure from slow sinks to the readers of children's output.

    A sink whose buffer has grown past its bound holds the flow; while it is
    held, the engine stops reading children's pipes (a child then waits on
    its own writes, as on a slow terminal) and reads on once every holder
    has released it. Nothing is dropped, and the event loop never waits."""

    def __init__(self) -> None:
        self._holders = 0
        self._waiting: list[Callable[[], None]] = []

    @property
    def held(self) -> bool:
        return self._holders > 0

    def hold(self) -> None:
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if not self._holders:
            waiting, self._waiting = self._waiting, []
            for callback in waiting:
                callback()

    def when_released(self, callback: Callable[[], None]) -> None:
        if self._holders:
            self._waiting.append(callback)
        else:
            callback()


class Bus:
    """Fan-out of events to subscribers, synchronously and in order.

    A subscriber may name the kinds of event it never looks at (`ignores`:
    a set of exact event classes); it is not called with them. Most of a
    run's events are each job's `queued` and `state` events, which the
    printers and the run's event log skip: the bus knows, per class, whom
    to call (measured in docs/profiling.md)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._routes: dict[type[Event], tuple[Subscriber, ...]] = {}
        """Event class → the subscribers that take it, made at its first event."""
        self.flow = Flow()
        """Held by a sink that cannot keep up with the children's output."""

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)
        self._routes = {}

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
            self._routes = {}

    def publish(self, event: Event) -> None:
        kind = type(event)
        route = self._routes.get(kind)
        if route is None:
            route = self._routes[kind] = tuple(s for s in self._subscribers if kind not in getattr(s, "ignores", ()))
        for subscriber in route:
            subscriber(event)


class EventQueue:
    """A bounded buffer for a subscriber that consumes at its own pace.

    When full, the oldest `Output` event is dropped and counted per instance;
    other events are never dropped (they are few and carry state).
    """

    def __init__(self, max_output_events: int = 10_000, max_output_chars: int = 16 << 20) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._output_count = 0
        self._max_output = max_output_events
        self._output_chars = 0
        self._max_chars = max_output_chars
        """What the output events may hold in all (a flooding child's are
        up to 256 KiB each)."""
        self.dropped: collections.Counter[str] = collections.Counter()
        self._waiter: asyncio.Event | None = None

    def __call__(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, Output):
            self._output_count += 1
            self._output_chars += len(event.text)
            while self._output_count > 1 and (self._output_count > self._max_output or self._output_chars > self._max_chars):
                self._drop_oldest_output()
        if self._waiter is not None:
            self._waiter.set()

    def _drop_oldest_output(self) -> None:
        for i, old in enumerate(self._events):
            if isinstance(old, Output):
                del self._events[i]
                self._output_count -= 1
                self._output_chars -= len(old.text)
                self.dropped[old.instance] += old.text.count("\n")
                return

    def drain(self) -> list[Event]:
        events = list(self._events)
        self._events.clear()
        self._output_count = self._output_chars = 0
        return events

    async def wait(self) -> None:
        if self._events:
            return
        self._waiter = asyncio.Event()
        try:
            await self._waiter.wait()
        finally:
            self._waiter = None
