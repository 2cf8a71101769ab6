"""One child: its own session and process group, output to its log first.

`Child` spawns one run of a job's command, hands every byte it writes to the
log file before anything else sees it, then passes complete lines (bounded in
length) to a callback. Stopping signals the whole group, waits, and SIGKILLs the
group and every descendant that left it. Knows nothing of the pool.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from procctl.errors import SpawnError

MAX_LINE_BYTES = 64 * 1024
"""A line longer than this is shown in pieces; the log keeps it whole."""

PIPE_DRAIN_GRACE_S = 1.0
"""After the child and its group are gone, how long a pipe held open by an
escaped descendant may keep us waiting for its last bytes."""

OutputCallback = Callable[[str, bytes], None]
"""(stream, whole lines) → None; must not block."""

_STREAMS = {1: "stdout", 2: "stderr"}


class LineSplitter:
    """Cuts a byte stream into whole lines, keeping at most MAX_LINE_BYTES pending."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """The complete lines now available (possibly empty)."""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending += data
            if len(self._pending) < MAX_LINE_BYTES:
                return b""
            # An endless line: show what we have as a line of its own so that
            # memory stays bounded; the log file keeps the bytes as written.
            whole, self._pending = self._pending + b"\n", b""
            return whole
        whole = self._pending + data[: cut + 1] if self._pending else data[: cut + 1]
        self._pending = data[cut + 1 :]
        if len(self._pending) >= MAX_LINE_BYTES:
            whole += self._pending + b"\n"
            self._pending = b""
        return whole

    def flush(self) -> bytes:
        """What is left when the stream ends, as a final line."""
        rest, self._pending = self._pending, b""
        return rest + b"\n" if rest else b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, log_fd: int, on_output: OutputCallback) -> None:
        self._log_fd = log_fd
        self._on_output = on_output
        self._splitters = {1: LineSplitter(), 2: LineSplitter()}
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        # The log file first: whatever happens next, the bytes are on disk.
        _write_all(self._log_fd, data)
        lines = self._splitters[fd].feed(data)
        if lines:
            self._on_output(_STREAMS[fd], lines)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd not in self._open_pipes:
            return
        self._open_pipes.discard(fd)
        rest = self._splitters[fd].flush()
        if rest:
            self._on_output(_STREAMS[fd], rest)
        if not self._open_pipes and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it is already gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    return _signal_group(pgid, 0)


def descendants(pid: int) -> list[psutil.Process]:
    """Every living descendant of `pid`, also those that left its process group."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Child:
    """One run of one command, in its own session."""

    def __init__(
        self,
        cmd: str | tuple[str, ...],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_fd: int,
        on_output: OutputCallback,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.preexec_fn = preexec_fn
        """Runs in the child between fork and exec (rlimits, nice)."""
        self.argv: tuple[str, ...] = ("/bin/sh", "-c", cmd) if isinstance(cmd, str) else tuple(cmd)
        self.cwd = cwd
        self.env = env
        self._log_fd = log_fd
        self._on_output = on_output
        self._transport: asyncio.SubprocessTransport | None = None
        self._protocol: _ChildProtocol | None = None
        self.pid = 0
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.returncode: int | None = None
        self.killed_hard = False
        """True when a stop had to end with SIGKILL."""

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        protocol = _ChildProtocol(self._log_fd, self._on_output)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: protocol,
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.cwd,
                env=dict(self.env),
                start_new_session=True,
                preexec_fn=self.preexec_fn,
            )
        except FileNotFoundError as exc:
            missing = exc.filename or self.argv[0]
            if not self.cwd.is_dir():
                raise SpawnError(f"working directory {self.cwd} does not exist") from None
            raise SpawnError(f"command not found: {missing}") from None
        except PermissionError as exc:
            raise SpawnError(f"cannot execute {exc.filename or self.argv[0]}: permission denied") from None
        except subprocess.SubprocessError as exc:
            # The pre-exec step failed in the child (e.g. a limit above the hard one).
            raise SpawnError(f"cannot apply limits to {self.argv[0]}: {exc}") from None
        except OSError as exc:
            raise SpawnError(f"cannot start {self.argv[0]}: {exc.strerror or exc}") from None
        self._transport = transport
        self._protocol = protocol
        self.pid = transport.get_pid()
        self.started_at = time.time()
        return self.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the child the leader of its own group.
        return self.pid

    @property
    def running(self) -> bool:
        return self.returncode is None and self._protocol is not None and not self._protocol.exited.done()

    def send_signal(self, sig: int) -> bool:
        """Deliver `sig` to the whole group (pause, resume, --signal)."""
        return self.returncode is None and _signal_group(self.pgid, sig)

    def write_stdin(self, data: bytes) -> bool:
        if self._transport is None or self.returncode is not None:
            return False
        pipe = self._transport.get_pipe_transport(0)
        if pipe is None or pipe.is_closing():
            return False
        pipe.write(data)  # type: ignore[attr-defined]
        return True

    async def wait(self) -> int:
        """Wait for the child to exit, for its group to empty and for its last
        bytes to reach the log. Returns asyncio's returncode (-N for signal N)."""
        assert self._transport is not None and self._protocol is not None
        await self._protocol.exited
        returncode = self._transport.get_returncode()
        assert returncode is not None
        self.returncode = returncode
        self.ended_at = time.time()
        # Processes the child left behind in its group would otherwise be orphans.
        if group_alive(self.pgid):
            _signal_group(self.pgid, signal.SIGKILL)
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.pipes_closed), PIPE_DRAIN_GRACE_S)
        except TimeoutError:
            pass
        self._transport.close()
        return returncode

    async def stop(self, stop_signal: int, timeout_s: float) -> None:
        """Graceful stop of the whole tree: `stop_signal` to the group, then after
        `timeout_s` SIGKILL to the group and to descendants that left it."""
        if self._protocol is None or self._protocol.exited.done():
            return
        tree = descendants(self.pid)
        _signal_group(self.pgid, stop_signal)
        # A stopped (paused) group would never act on the signal.
        _signal_group(self.pgid, signal.SIGCONT)
        # Done when the child has exited and every holder of its pipes is gone:
        # both are events, so no polling of the group (whose dead members may
        # linger as zombies until init reaps them).
        everything = asyncio.gather(asyncio.shield(self._protocol.exited), asyncio.shield(self._protocol.pipes_closed))
        try:
            await asyncio.wait_for(everything, timeout_s)
        except TimeoutError:
            self.killed_hard = group_alive(self.pgid) or any(_alive(proc) for proc in tree)
        _signal_group(self.pgid, signal.SIGKILL)
        for proc in tree:
            try:
                if proc.is_running():
                    proc.kill()
            except psutil.Error:
                pass

    def kill(self) -> None:
        """SIGKILL the group and its known descendants at once (second Ctrl-C)."""
        if self.pid:
            tree = descendants(self.pid)
            _signal_group(self.pgid, signal.SIGKILL)
            for proc in tree:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
