"""The `subscribe` verb: a client gets every event as it happens, as the
JSON records of docs/events.md, one per line, until it hangs up.

Each subscriber has its own bounded backlog on the bus, and its own task
writing it out, so the supervisor never waits for a client: a client that
reads slowly loses output lines first (the oldest; it is told how many with a
`lagged` record), metrics are folded to the latest per instance, and a client
that is stuck long enough for even the state events to pile up past a bound is
disconnected. Other clients, and the supervisor, go on as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

from procctl import events
from procctl.records import event_records, record_line

OUTPUT_EVENTS = 1024
"""Output events (each one or more lines) a subscriber's backlog holds; beyond
it the oldest are dropped and counted."""
OUTPUT_CHARS = 16 << 20
"""...and the characters of output they hold at most: a flooding child's
events are up to a grown pipe's 256 KiB each (engine/pipes.py)."""
OTHER_EVENTS = 20_000
"""Other events a backlog holds before the subscriber is given up on."""
WRITE_BUFFER_BYTES = 256 << 10
"""Bytes waiting in the socket's buffer before the writer waits for the client."""
BATCH_EVENTS = 512
"""Events encoded at a time, so a busy stream never holds the loop long."""


class Backlog:
    """One subscriber's events not yet written: a bus subscriber that never blocks."""

    def __init__(self, output_events: int = OUTPUT_EVENTS, other_events: int = OTHER_EVENTS, output_chars: int = OUTPUT_CHARS) -> None:
        self._events: collections.deque[events.Event] = collections.deque()
        self._samples: dict[str, events.Sample] = {}
        self._output = 0
        self._output_max = output_events
        self._chars = 0
        """Characters of the output events waiting."""
        self._chars_max = output_chars
        self._other_max = other_events
        self.skipped: collections.Counter[str] = collections.Counter()
        """Lines dropped per instance since the last `lagged` record."""
        self.overflowed = False
        """The client fell so far behind that it is being disconnected."""
        self._wake = asyncio.Event()
        self.gone = asyncio.Event()
        """Set when the client fell so far behind that it is disconnected."""

    def __call__(self, event: events.Event) -> None:
        if self.overflowed:
            return
        if isinstance(event, events.Sample) and not event.final:
            # Only the latest figures of an instance matter to a view.
            self._samples[event.instance] = event
            self._wake.set()
            return
        self._events.append(event)
        if isinstance(event, events.Output):
            self._output += 1
            self._chars += len(event.text)
            while self._output > 1 and (self._output > self._output_max or self._chars > self._chars_max):
                self._drop_oldest_output()
        if len(self._events) - self._output > self._other_max:
            self.overflowed = True
            self._events.clear()
            self._samples.clear()
            self.gone.set()
        self._wake.set()

    def _drop_oldest_output(self) -> None:
        for index, old in enumerate(self._events):
            if isinstance(old, events.Output):
                del self._events[index]
                self._output -= 1
                self._chars -= len(old.text)
                self.skipped[old.instance] += old.text.count("\n")
                return

    async def wait(self) -> None:
        await self._wake.wait()

    def take(self, limit: int = BATCH_EVENTS) -> list[dict[str, Any]]:
        """Records of up to `limit` waiting events (a `lagged` record first
        when lines were dropped), and the latest metrics."""
        records: list[dict[str, Any]] = []
        if self.skipped:
            records.append({"ts": round(time.time(), 6), "event": "lagged", "name": "procctl", "instance": "procctl", "lines": dict(self.skipped)})
            self.skipped.clear()
        pending = self._events
        for _ in range(min(limit, len(pending))):
            event = pending.popleft()
            if isinstance(event, events.Output):
                self._output -= 1
                self._chars -= len(event.text)
            records.extend(event_records(event))
        if not pending:
            for sample in self._samples.values():
                records.extend(event_records(sample))
            self._samples.clear()
            self._wake.clear()
        return records


async def stream(backlog: Backlog, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closing: asyncio.Event) -> None:
    """Write the backlog out until the client hangs up, falls too far
    behind, or the supervisor closes (`closing`: what is left is written,
    if the client takes it within a second)."""
    writer.transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
    loop = asyncio.get_running_loop()
    hung_up = loop.create_task(reader.read())  # the client sends nothing more; EOF is the end
    given_up = loop.create_task(backlog.gone.wait())
    stop = loop.create_task(closing.wait())
    ends = {hung_up, given_up}
    try:
        while True:
            waiter = loop.create_task(backlog.wait())
            await asyncio.wait({waiter, stop, *ends}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if any(task.done() for task in ends):
                return
            records = backlog.take()
            if not records:
                if stop.done():
                    return
                continue
            writer.write(b"".join(record_line(record) for record in records))
            # Suspends this client's task alone while its buffer is full; the
            # backlog keeps filling (bounded) meanwhile.
            drain = loop.create_task(writer.drain())
            await asyncio.wait({drain, *ends}, timeout=1.0 if stop.done() else None, return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
                return
            drain.result()
    finally:
        for task in (hung_up, given_up, stop):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await task
