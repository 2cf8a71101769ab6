"""SIGINT/SIGTERM for the supervisor: the handler only records; the loop acts.

First signal: graceful stop. Second: force (SIGKILL everything). The previous
handlers come back when the capture ends. (The run then exits with
`errors.INTERRUPTED_EXIT`.)
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable


class SignalCapture:
    def __init__(self, on_graceful: Callable[[int], None], on_force: Callable[[int], None]) -> None:
        self._on_graceful = on_graceful
        self._on_force = on_force
        self.received: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _handle(self, signum: int) -> None:
        self.received.append(signum)
        if len(self.received) == 1:
            self._on_graceful(signum)
        else:
            self._on_force(signum)

    def __enter__(self) -> SignalCapture:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._handle, int(sig))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)
