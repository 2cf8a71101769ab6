"""procctl's own events of a run, kept with its logs (`events.jsonl`).

What procctl did to an instance — started it, saw it crash, restarts it in
1 s, stopped it, found it over a limit — belongs beside what the instance
wrote: `procctl logs` shows both, each event where it happened among the
lines. The supervisor subscribes a `RunLog` to its bus for the whole run.

Each record is the event as docs/events.md writes it, with `at`: how many
bytes of the instance's output its log held when the event happened. The
children's lines are not repeated here (their log has them), nor are the
metrics; the `queued` and `state` events add nothing the others do not say.
Records are written in batches (at most BATCH_S late, or when BATCH_BYTES
gather), through a rotating `LogFile`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from procctl import events
from procctl.engine.logfile import LogFile
from procctl.records import event_records, record_line

BATCH_S = 0.2
BATCH_BYTES = 64 * 1024
_LEFT_OUT = (events.Output, events.Sample, events.PoolSample, events.RegionSample, events.Queued, events.StateChanged)


class RunLog:
    """A bus subscriber writing procctl's events of the run to its event log."""

    ignores = frozenset(_LEFT_OUT)
    """(The bus does not call it with these.)"""

    def __init__(self, log: LogFile, position: Callable[[str], int | None]) -> None:
        self._log = log
        self._position = position
        """Where an instance's output is now (None: no such instance)."""
        self._pending = bytearray()
        self._flush_due: asyncio.TimerHandle | None = None

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, _LEFT_OUT):
            return
        at = self._position(event.instance)
        for record in event_records(event):
            if at is not None:
                record["at"] = at
            self._pending += record_line(record)
        if len(self._pending) >= BATCH_BYTES:
            self.flush()
        elif self._flush_due is None:
            try:
                self._flush_due = asyncio.get_running_loop().call_later(BATCH_S, self.flush)
            except RuntimeError:
                self.flush()  # No loop (the run is over): at once.

    def flush(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if self._pending:
            self._log.write(bytes(self._pending))
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._log.close()
