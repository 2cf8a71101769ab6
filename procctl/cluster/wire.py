"""What goes between procctl and the Dask workers that run its jobs. Pure.

A job travels as a `JobSpec` (plain data: Dask pickles it). Everything a
running job says comes back as one kind of small dict on the run's event
topic (`Worker.log_event` → the scheduler → `Client.subscribe_topic`),
msgpack-able, keyed by the task's key and the attempt's token, so that a
message of an attempt procctl no longer follows (Dask ran the task again
elsewhere) is told apart:

    {"e": "start", "k": KEY, "r": TOKEN, "w": WORKER, "pid": PID, "t": EPOCH}
    {"e": "out",   "k": KEY, "r": TOKEN, "c": [[FD, BYTES], ...]}   # FD 1 or 2, in the order read
    {"e": "use",   "k": KEY, "r": TOKEN, "u": [CPU_S, RSS, READ, WRITE, THREADS, CHILDREN]}
    {"e": "end",   "k": KEY, "r": TOKEN, "rc": RC, "cpu": [USER_S, SYS_S], "t": EPOCH,
                   "cut": "limit"|None, "why": str, "breach": [LIMIT, VALUE, MAX, MECHANISM]|None}
    {"e": "fail",  "k": KEY, "w": WORKER, "why": str}                # could not start

Output is batched: one message per `BATCH_BYTES` or per `BATCH_S`,
whichever comes first, never one per line.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from procctl.config.manifest import Limits

BATCH_BYTES = 64 * 1024
"""Output bytes per message at most (the scheduler keeps the last
thousand messages of a topic: this bounds what a run leaves there)."""
BATCH_S = 0.02
"""The longest a byte waits on the worker before it is sent."""
WINDOW_BYTES = 8 * 1024 * 1024
"""Output bytes of one job that may be on their way, unacknowledged: past
this the worker stops reading its pipes (the child waits on its writes, as
it would here), so a flood cannot fill the cluster's memory."""
PLUGIN_PREFIX = "procctl-jobs-"
"""The worker plugin's name is this and procctl's version: runs of
different versions each find their own."""


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One attempt of one job, as the worker runs it."""

    key: str
    """The Dask task's key (unique per attempt)."""
    topic: str
    """The event topic its messages go to."""
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    """Added to the worker's own environment."""
    limits: Limits
    """Held on the worker by the code that holds them here: rlimits set
    between fork and exec, `memory` and `cpu_percent` by a cgroup where the
    worker may make one, else by the watchdog and the duty cycle."""
    nice: int | None
    stop_signal: int
    stop_timeout_s: float
    metrics_interval_s: float
    name: str
    """The instance (`thumb[7]`), for the worker's own messages."""


def message(kind: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"e": kind, "k": key, **fields}
