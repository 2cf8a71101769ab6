"""Spawner workers with a table of descriptors of their own.

A fork copies the caller's table of descriptors and the exec closes the
copies, so a spawn costs in proportion to what the supervisor holds: four
descriptors a running child, 1.8 ms a spawn with 12,000 held against 0.56
ms with none (docs/profiling.md, bring-up of many). Once the table is that
large (`spawner.APART_FROM_FD`), a start that needs nothing of it
(`Spawner.call_apart`) runs on one of these workers: each gave itself a
table of its own (`unshare(CLONE_FILES)`) and closed all of it but its
channel to the loop, a socket pair. The descriptors a start makes there
(the child's pipes, its pidfd) reach the loop's table over that channel
(SCM_RIGHTS, close-on-exec as they arrive), and the message is also what
wakes the loop for the outcome.
"""

from __future__ import annotations

import array
import asyncio
import collections
import errno
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

MAX_HANDED = 8
"""Descriptors one start hands over, at most."""


class Call(Protocol):
    """What these workers need of a spawner's call."""

    fn: Callable[[], Any]
    rebuild: Callable[[Any, tuple[int, ...]], Any] | None

    def end(self) -> bool: ...

    def undo_now(self, result: object, error: BaseException | None) -> None: ...

    def deliver(self, result: Any, error: BaseException | None) -> None: ...


_Outcomes = collections.deque[tuple[Call, Any, "BaseException | None"]]


class ApartWorkers:
    """Workers each with a table of descriptors of its own (`unshare`), and
    a channel (a socket pair) to the loop on which each outcome comes back
    with the descriptors it made. Each worker's outcomes are queued in the
    order its messages go, so the loop pairs them by the worker's channel."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int, fd_limit: int) -> None:
        """`fd_limit`: no descriptor of the process is above it."""
        import ctypes

        self.loop = loop
        self._fd_limit = fd_limit
        self.calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._unshare = ctypes.CDLL(None, use_errno=True).unshare
        self._channels: list[tuple[socket.socket, socket.socket, _Outcomes]] = []
        self._threads: list[threading.Thread] = []
        for _ in range(threads):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ours.setblocking(False)
            outcomes: _Outcomes = collections.deque()
            self._channels.append((ours, theirs, outcomes))
            loop.add_reader(ours.fileno(), self._receive, ours, outcomes)
        started = [threading.Event() for _ in range(threads)]
        for number, (_, theirs, outcomes) in enumerate(self._channels):
            thread = threading.Thread(target=self._work, args=(theirs, outcomes, started[number]), name=f"procctl-spawn-apart-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()
        for event in started:
            event.wait()

    def _work(self, channel: socket.socket, outcomes: _Outcomes, started: threading.Event) -> None:
        """In a worker: its own table (a copy of the process's, then every
        descriptor closed but the standard three and its channel)."""
        CLONE_FILES = 0x400
        # Where the kernel refuses, the worker shares the process's table:
        # what it hands over is then a copy, and its own is closed all the same.
        if self._unshare(CLONE_FILES) == 0:
            keep = channel.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, self._fd_limit)
        started.set()
        while (call := self.calls.get()) is not None:
            _run(call, channel, outcomes)

    def _receive(self, channel: socket.socket, outcomes: _Outcomes) -> None:
        """On the loop: every outcome its worker has sent, with its descriptors."""
        while True:
            try:
                received = _receive_fds(channel)
            except OSError:
                return  # (nothing more for now)
            if received is None:
                return  # the worker's end is closed
            sent, fds = received
            call, result, error = outcomes.popleft()
            if error is None and call.rebuild is not None:
                result = call.rebuild(result, fds + (-1,) * (sent - len(fds)))
                if len(fds) < sent:
                    # The table is full: the kernel closed what found no room.
                    call.undo_now(result, None)
                    result, error = None, OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            call.deliver(result, error)

    def close(self) -> None:
        """Stop the workers (each ends its call first), take what they sent
        last, and close the channels."""
        for _ in self._threads:
            self.calls.put(None)
        for thread in self._threads:
            thread.join()
        for ours, theirs, outcomes in self._channels:
            self._receive(ours, outcomes)
            try:
                self.loop.remove_reader(ours.fileno())
            except (RuntimeError, ValueError):
                pass  # (its loop is closed)
            ours.close()
            theirs.close()


def _receive_fds(channel: socket.socket) -> tuple[int, tuple[int, ...]] | None:
    """One message: how many descriptors were sent, and those that arrived
    (fewer when this table had no room for them); None at the end of the
    channel."""
    size = socket.CMSG_SPACE(MAX_HANDED * array.array("i").itemsize)
    # Close-on-exec as they arrive: a child spawned meanwhile must not hold them.
    data, ancillary, _flags, _address = channel.recvmsg(1, size, socket.MSG_CMSG_CLOEXEC)
    if not data:
        return None
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data[0], tuple(fds)


def _run(call: Call, channel: socket.socket, outcomes: _Outcomes) -> None:
    """In a worker: `fn` returns (result, fds); the outcome is queued, then
    its message carries the fds to the loop (and wakes it), and the
    worker's copies are closed."""
    error: BaseException | None = None
    result: Any = None
    fds: tuple[int, ...] = ()
    try:
        result, fds = call.fn()
    except BaseException as exc:
        error = exc
    if call.end():
        call.undo_now(result, error)
        return
    outcomes.append((call, result, error))
    try:
        # (Its one byte says how many it sends.)
        if fds:
            channel.sendmsg([bytes((len(fds),))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            channel.send(b"\x00")
    except OSError:
        # Nobody will take it (the channel is gone): undone here, with this table's numbers.
        outcomes.pop()
        call.undo_now(result, error)
        return
    for fd in fds:
        os.close(fd)
