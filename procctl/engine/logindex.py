"""How a run's logs lie on disk, and when each piece of output arrived.

`.procctl/logs/` holds the current run (or the last one); an earlier run's
files are moved whole to `.procctl/logs/past/RUN/` when the next run begins
(`StateDir.begin_run`), and the oldest past runs are dropped when a run ends. In a run:

- `NAME.log`: the instance's output, byte for byte as it wrote it, across
  its restarts; `NAME.log.1` … `NAME.log.K` its older output (1 the newest):
  the files oldest first are the output as written.
- `NAME.log.idx` (and `NAME.log.1.idx` …, rotated with their log): records
  of RECORD — the position in the instance's output (bytes before this
  piece, counted across rotations) and the time it arrived — written for a
  file's first piece, for the first piece after a pause, and otherwise at
  most every MARK_EVERY_S. An index past a quarter of `log_max_size`
  rotates its log early, so that both stay bounded.
- `events.jsonl` (and `events.jsonl.1` …): procctl's own events of the run,
  one JSON record per line as docs/events.md has them, with `at`: where in
  the instance's output it happened (the position its log had reached).
- `run.json`: which run this is (its id, the supervisor's pid, its start).
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Sequence

RECORD = struct.Struct("<Qd")
"""position (u64), time (f64 seconds since the epoch)."""
MARK_EVERY_S = 0.1
"""While output flows without a pause, a mark at most this often: a line's
time is then known to this much, and a flood's index stays small."""
QUIET_S = 0.01
"""Output that comes after a pause this long gets a mark of its own."""
INDEX_SUFFIX = ".idx"
EVENTS = "events.jsonl"
RUN_FILE = "run.json"
PAST = "past"
"""The directory of earlier runs, in `.procctl/logs/`."""
KEEP_PAST_RUNS = 5
"""Earlier runs kept in `past/` (the oldest go first)."""


def rotated(name: str, number: int) -> str:
    """The name of a log's `number`th older file (0: the current one)."""
    return name if number == 0 else f"{name}.{number}"


def index_of(name: str) -> str:
    return name + INDEX_SUFFIX


def pieces(names: Sequence[str], log_name: str) -> list[str]:
    """The files of one log among `names`, oldest first."""
    present = set(names)
    found = []
    number = 1
    while rotated(log_name, number) in present:
        found.append(rotated(log_name, number))
        number += 1
    found.reverse()
    if log_name in present:
        found.append(log_name)
    return found


def is_log(name: str) -> bool:
    """A current log file (`web.log`, `thumb.7.log`), not a rotated one or an index."""
    return name.endswith(".log")


def read_marks(fd: int) -> list[tuple[int, float]]:
    """The records of an open index file (a torn last record is left out)."""
    data = b""
    size = os.fstat(fd).st_size
    if size:
        data = os.pread(fd, size - size % RECORD.size, 0)
    return list(RECORD.iter_unpack(data))


class Times:
    """When each position of an instance's output arrived, from its marks."""

    def __init__(self, marks: list[tuple[int, float]]) -> None:
        self._positions = [position for position, _ in marks]
        self._times = [ts for _, ts in marks]

    def __bool__(self) -> bool:
        return bool(self._positions)

    @property
    def first_position(self) -> int | None:
        return self._positions[0] if self._positions else None

    def at(self, position: int) -> float | None:
        """The time of the piece `position` is in (None before any mark)."""
        i = bisect.bisect_right(self._positions, position) - 1
        return self._times[i] if i >= 0 else None

    def position_since(self, ts: float) -> int | None:
        """The first marked position that arrived at `ts` or later."""
        i = bisect.bisect_left(self._times, ts)
        return self._positions[i] if i < len(self._positions) else None
