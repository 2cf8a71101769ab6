"""Running the supervisor on an asyncio loop with the right child watcher and
signal capture."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from procctl import events
from procctl.bus import Bus
from procctl.engine.signals import SignalCapture
from procctl.engine.outcome import RunResult
from procctl.engine.supervisor import Supervisor


_STOP_REASONS = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hangup (SIGHUP: the terminal closed)",
}


def _use_pidfd_watcher() -> None:
    # For the few children spawned through asyncio (exec probes; the jobs
    # themselves are watched by `Child`): Python 3.11's default watcher parks
    # one thread per child in waitpid(), a pidfd is watched by the loop
    # itself. 3.12+ picks pidfd on its own (and deprecates this API).
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.get_event_loop_policy().set_child_watcher(asyncio.PidfdChildWatcher())


HEAP_TRIM_BYTES = 4 << 20
HEAP_MMAP_BYTES = 1 << 20
HEAP_TOP_PAD_BYTES = 1 << 20
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def _steady_heap() -> None:
    # Relaying output allocates and frees a few buffers of up to 256 KiB per
    # chunk. With glibc's defaults each went to the kernel and back (an mmap
    # and munmap, or the heap's top trimmed and grown again with brk), page
    # faults included: 13,871 brk calls for 256 MiB, and three quarters of
    # the supervisor's system time. Keeping a few MiB of freed heap cut its
    # system time from 0.89 s to 0.20 s on that run (docs/profiling.md).
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return  # Not glibc: its allocator has its own ways.
    for option, value in ((_M_MMAP_THRESHOLD, HEAP_MMAP_BYTES), (_M_TRIM_THRESHOLD, HEAP_TRIM_BYTES), (_M_TOP_PAD, HEAP_TOP_PAD_BYTES)):
        mallopt(option, value)


def _steady_heap_once_started(bus: Bus) -> None:
    """`_steady_heap` once the first child has started, not before: ctypes
    and its look-up cost ~2 ms of the way to the first spawn, and the heap
    matters only once output flows."""
    loop = asyncio.get_running_loop()
    pending = True

    def on_event(event: events.Event) -> None:
        nonlocal pending
        if pending and isinstance(event, events.Started):
            pending = False
            # (Unsubscribed from the loop, not while the bus calls its subscribers.)
            loop.call_soon(bus.unsubscribe, on_event)
            loop.call_soon(_steady_heap)

    bus.subscribe(on_event)


def run_supervisor(
    supervisor: Supervisor,
    services: Sequence[Callable[[], AbstractAsyncContextManager[object]]] = (),
) -> RunResult:
    """Run to the end; SIGINT/SIGTERM (and SIGHUP: see `signals.hangup_action`)
    stop gracefully, a second one forces.

    `services` (the control socket, a live view) are entered on the loop before
    the first child starts and left after the last one ended; one that fails
    to start means nothing starts."""
    _use_pidfd_watcher()

    async def main() -> RunResult:
        _steady_heap_once_started(supervisor.bus)
        capture = SignalCapture(
            lambda signum: supervisor.request_stop(_STOP_REASONS.get(signum, "interrupted"), interrupted=True),
            lambda signum: supervisor.force_stop(),
            on_reload=supervisor.edits.reload_on_hangup,
            detached=supervisor.detached,
        )
        async with contextlib.AsyncExitStack() as stack:
            for service in services:
                await stack.enter_async_context(service())
            with capture:
                return await supervisor.run()

    return asyncio.run(main())
