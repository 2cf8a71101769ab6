"""What the interactive view sees of a supervisor: its verbs and its events.

The view (`procctl run` on a terminal, `procctl top`) is written against this
one face and never knows which side of a socket it is on. In `run` the face
is the supervisor in the same process; in `top` it is a connection to a
running one. Either way every action is a control verb — the very requests
`procctl pause`, `procctl restart`, … send — and every change arrives as an
event, whoever caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from procctl import events
from procctl.bus import EventQueue
from procctl.ui.live_model import InstanceInfo


class Supervision(Protocol):
    """A supervisor as the view works with it."""

    attached: bool
    """True for `procctl top`: leaving the view leaves the supervisor
    running. False for `procctl run`: leaving stops everything."""
    queue: EventQueue
    """Every event of the supervisor, as it happens (output dropped first
    and counted when the view lags)."""
    instances: Sequence[InstanceInfo]
    """The instances known when the view opened (more arrive as events)."""
    seed: Sequence[events.Event]
    """Events that bring a fresh view to the supervisor's present (`top`
    opening on a supervisor that has run for a while): folded into the
    table, not shown as lines."""
    backlog: Sequence[events.Output]
    """What the instances wrote before the view opened (`top`), oldest
    first: shown in the merged output as it was, then the live lines."""
    max_parallel: int
    client_pid: int
    """What the supervisor knows this view's requests by (`Requested.client_pid`)."""

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        """One control verb; its result, or a ProcctlError with the
        supervisor's message."""
        ...

    def leave(self) -> None:
        """The user asked to leave (q, Ctrl-C): `top` just goes; `run` stops
        everything as Ctrl-C does (a second time forces)."""
        ...

    @property
    def ended(self) -> bool:
        """The supervisor is gone (top) or its run is over (run)."""
        ...
