"""The restart policy: whether an ended run is followed by another, how
long it waits first, and when the policy gives up.

`RestartBudget` counts the restarts in a row; `wanted` reads the process's
`restart`, `on_limit` and `max_restarts`; `delay_s` doubles the backoff up
to `MAX_BACKOFF_S`. The runner (`engine/life.py`) asks these and does the
waiting.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from procctl.states import State

if TYPE_CHECKING:
    from procctl.config.manifest import ProcessSpec

MAX_BACKOFF_S = 30.0


class RestartBudget:
    """The restarts in a row since the instance last stayed up `min_uptime`
    (or was restarted or started by hand): what `max_restarts` bounds and
    what doubles the backoff, as pm2 and supervisord count them. (A plain
    class: a dataclass compiles its methods at every start.)"""

    __slots__ = ("used", "since")

    def __init__(self) -> None:
        self.used = 0
        self.since: float | None = None
        """Epoch seconds of the end of the run that took the first restart."""

    def reset(self) -> None:
        self.used, self.since = 0, None

    def spent(self, spec: ProcessSpec) -> bool:
        return self.used >= spec.max_restarts

    def take(self, spec: ProcessSpec) -> float:
        """Count one more restart; the backoff before it, in seconds."""
        if self.used == 0:
            self.since = time.time()
        self.used += 1
        return delay_s(spec, self.used)

    def within_s(self) -> float:
        """How long since the first restart of this budget was taken."""
        return time.time() - self.since if self.since is not None else 0.0


def delay_s(spec: ProcessSpec, used: int) -> float:
    """The backoff before restart number `used` in a row: doubled each time, bounded."""
    return min(spec.backoff_s * 2 ** (used - 1), MAX_BACKOFF_S)


def wanted(spec: ProcessSpec, state: State) -> bool:
    """Whether the process's policy wants another run after one that ended
    in `state` (the budget aside, and unless it was asked to stay down)."""
    if spec.max_restarts == 0:
        return False
    if state is State.LIMIT_EXCEEDED:
        return spec.on_limit == "restart"
    if spec.restart == "always":
        return True
    return spec.restart == "on-failure" and state.failure
