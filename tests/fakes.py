"""A fake executor for the engine's seam (engine/child.py): children that do
exactly what a test tells them, with no process and no sleep, so that the
edge cases of an instance's life run in a few turns of the loop.

What a fake child does is read from its command:
- `exit N`: ends with code N as soon as it has started;
- `missing`: cannot be started (SpawnError, as a missing command);
- `stubborn`: ignores the stop signal until `kill` (or `release`);
- `slow-start`: its start waits until `let_start` (a spawn queued for a thread);
- `queued`: its start waits until `begin` (a job queued on a cluster); a
  `kill` before then gives the start up (SpawnError);
- `this-process`: has the test's own pid, so that what the test sends to the
  notification socket is heard as the child's;
- anything else runs until it is stopped, killed or told to `exit`.

`FakeExecutor(remote=True)` stands for a cluster's: its children report
their usage (`measure`) and may end with a verdict of where they ran (`end`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from procctl.engine.child import Exit, SpawnRequest
from procctl.errors import SpawnError

_PIDS = itertools.count(1_000_000_000)
"""Far above any pid the kernel hands out (pid_max is at most 2^22)."""


class FakeChild:
    def __init__(self, request: SpawnRequest) -> None:
        self.request = request
        self.pid = 0
        self.started_at = 0.0
        self.signals: list[int] = []
        self.stdin = bytearray()
        self.suspended = False
        self.stops = 0
        self._exit: asyncio.Future[Exit] | None = None
        self._released: asyncio.Future[None] | None = None
        self._may_start: asyncio.Event | None = None
        self._begun: asyncio.Future[None] | None = None
        self.gave_up = False
        """Its start was cancelled while it was queued."""

    @property
    def command(self) -> str:
        cmd = self.request.cmd
        return cmd if isinstance(cmd, str) else " ".join(cmd)

    @property
    def running(self) -> bool:
        return self._exit is not None and not self._exit.done()

    async def start(self) -> int:
        if self.command == "missing":
            raise SpawnError("command not found: missing")
        if self.command == "slow-start":
            self._may_start = asyncio.Event()
            await self._may_start.wait()
        loop = asyncio.get_running_loop()
        if self.command == "queued":
            self._begun = loop.create_future()
            try:
                await self._begun
            except asyncio.CancelledError:
                self.gave_up = True  # as a cluster's child cancels its task
                raise
        self.pid = os.getpid() if self.command == "this-process" else next(_PIDS)
        self.started_at = time.time()
        self._exit = loop.create_future()
        if self.command.startswith("exit "):
            loop.call_soon(self.exit, int(self.command.split()[1]))
        return self.pid

    @property
    def starting(self) -> bool:
        return self._may_start is not None and not self._may_start.is_set()

    def let_start(self) -> None:
        if self._may_start is not None:
            self._may_start.set()

    @property
    def queued(self) -> bool:
        return self._begun is not None and not self._begun.done()

    def begin(self) -> None:
        """A queued child starts."""
        assert self._begun is not None
        self._begun.set_result(None)

    def exit(self, returncode: int) -> None:
        """End now with `returncode` (-N: signal N)."""
        self.end(Exit(returncode, None, time.time()))

    def end(self, exit: Exit) -> None:
        if self._exit is not None and not self._exit.done():
            self._exit.set_result(exit)
        if self._released is not None and not self._released.done():
            self._released.set_result(None)

    def measure(self, usage: Any) -> None:
        """What it measured of its tree where it runs (remote children)."""
        assert self.request.on_usage is not None
        self.request.on_usage(usage)

    def output(self, text: str, stream: str = "stdout") -> None:
        """Write whole lines, as the child's pipe reader hands them on."""
        self.request.on_output(stream, text)

    async def wait(self) -> Exit:
        assert self._exit is not None
        return await asyncio.shield(self._exit)

    async def stop(self, stop_signal: int, timeout_s: float, known: Any = None) -> bool:
        if not self.running:
            return False
        self.stops += 1
        self.signals.append(stop_signal)
        if self.command != "stubborn":
            self.exit(-stop_signal)
            return False
        self._released = asyncio.get_running_loop().create_future()
        await self._released
        return True

    def kill(self, known: Any = None) -> None:
        if self._begun is not None and not self._begun.done():
            self._begun.set_exception(SpawnError("stopped before it started on the cluster"))
            return
        self.exit(-signal.SIGKILL)

    def send_signal(self, sig: int) -> bool:
        self.signals.append(sig)
        return self.running

    def suspend(self, known: Any = None) -> None:
        self.suspended = True

    def resume(self, known: Any = None) -> None:
        self.suspended = False

    def write_stdin(self, data: bytes) -> bool:
        self.stdin += data
        return self.running


class FakeExecutor:
    def __init__(self, *, keep: bool = True, remote: bool = False) -> None:
        self.remote = remote
        self.children: list[FakeChild] = []
        self.entered = 0
        self._keep = keep
        """Keep every child made (for `of`); off for runs of many thousands."""

    def __enter__(self) -> FakeExecutor:
        self.entered += 1
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def settle(self) -> None:
        pass

    @property
    def env(self) -> Mapping[str, str]:
        return {}

    @property
    def companions(self) -> tuple[int, ...]:
        return ()

    def child(self, request: SpawnRequest) -> FakeChild:
        child = FakeChild(request)
        if self._keep:
            self.children.append(child)
        return child

    def of(self, name: str) -> list[FakeChild]:
        """The children of instance `name`, oldest first."""
        return [child for child in self.children if child.request.env.get("PROCCTL_INSTANCE") == name]
