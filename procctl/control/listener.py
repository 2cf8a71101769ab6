"""The control socket's accept loop: how many connections the supervisor
holds, and what it does when it cannot take one more.

asyncio's own server (`start_unix_server`) accepts whatever comes and, when
accept fails for want of descriptors (EMFILE), logs the error with its
traceback and tries again a second later, without end: 400 clients that
never finish a request filled the supervisor's log at a megabyte a second,
and nobody else could connect. This loop instead:

- holds at most `MAX_CONNECTIONS` connections (subscriptions included), and
  takes none that would leave fewer than `FREE_DESCRIPTORS` free in the
  supervisor's table (half the reserve the starts leave, engine/spawner.py
  `FD_RESERVE`: the rest stays for log files, /proc and imports);
- answers a connection it does not take with one `busy` error line and closes
  it, so a client shows why in one line instead of waiting;
- keeps one spare descriptor, given up for the moment of an accept that found
  the table full, so even then the client is accepted, answered `busy` and
  closed, and the listen queue never fills with clients left waiting;
- says that it is refusing in one warning per episode (`warn`), never one per
  connection.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from procctl.control.protocol import Reply
from procctl.engine.spawner import FD_RESERVE

MAX_CONNECTIONS = 128
"""Connections held at once, requests being read and subscriptions alike;
one more is answered `busy`. (Each is a descriptor, and a task.)"""

FREE_DESCRIPTORS = FD_RESERVE // 2
"""Descriptors a connection must leave free in the supervisor's table."""

BACKLOG = 128
"""Clients the kernel queues before the loop accepts them."""

RETRY_S = 1.0
"""How long accepting waits when the system itself is short (no spare
descriptor, ENFILE, ENOBUFS): the clients wait in the listen queue meanwhile."""


def _spare() -> int | None:
    try:
        return os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _free_descriptors() -> tuple[int, int]:
    """(free descriptors below the limit, the limit). A descriptor may only
    be numbered below the limit, so those above it (a limit lowered while
    they were open) take no room. The limit is read each time: `prlimit`
    changes it from outside. Listing the table costs about 0.2 ms for 300
    descriptors, less than any request's answer."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit == resource.RLIM_INFINITY:
        return 1 << 30, limit
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return 0, limit
    return limit - sum(1 for name in names if int(name) < limit), limit


def refuse(conn: socket.socket, message: str) -> None:
    """Answer a connection that is not taken with one error line, and close it."""
    try:
        conn.setblocking(False)
        conn.send(Reply.failure(message, 1).encode())
    except OSError:
        pass  # (gone already, or its buffer is full: the close tells it)
    conn.close()


class Listener:
    """Accepts on a bound socket while it is open. `connections` is shared by
    the listeners a server has had (a removed socket is bound again while
    its clients are still served), and every connection taken is served by
    `serve` in a task of that set."""

    def __init__(
        self,
        sock: socket.socket,
        serve: Callable[[socket.socket], Coroutine[Any, Any, None]],
        connections: set[asyncio.Task[None]],
        warn: Callable[[str], None],
    ) -> None:
        self._sock = sock
        self._serve = serve
        self._connections = connections
        self._warn = warn
        self._loop = asyncio.get_running_loop()
        self._spare = _spare()
        self._warned = False
        """Whether this episode of refusals was told already."""
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        sock.listen(BACKLOG)
        self._loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Take no more connections; those taken are served on."""
        if self._sock.fileno() < 0:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def _accept(self) -> None:
        # A turn takes at most a queue's worth, so the loop goes on to others.
        for _ in range(BACKLOG):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._spare is not None:
                    if self._accept_with_spare():
                        continue
                    return
                self._pause(exc)
                return
            self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            self._refuse(
                conn,
                f"busy: {MAX_CONNECTIONS} control connections are open, the most the supervisor takes; try again",
                f"control socket: {MAX_CONNECTIONS} connections are open, the most it takes; new connections are answered busy until some close",
            )
            return
        free, limit = _free_descriptors()
        if free < FREE_DESCRIPTORS:
            self._short_of_files(conn, limit)
            return
        self._warned = False
        task = self._loop.create_task(self._serve(conn))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    def _short_of_files(self, conn: socket.socket, limit: int) -> None:
        self._refuse(
            conn,
            f"busy: the supervisor has too few open files left (its limit is {limit}); try again",
            f"control socket: too few open files left (limit {limit}); connections are answered busy until some close",
        )

    def _refuse(self, conn: socket.socket, reply: str, warning: str) -> None:
        refuse(conn, reply)
        if not self._warned:
            self._warned = True
            self._warn(warning)

    def _accept_with_spare(self) -> bool:
        """The table is full: free the spare for one accept, answer that
        client `busy`, and take the spare back. Whether to go on accepting."""
        assert self._spare is not None
        os.close(self._spare)
        self._spare = None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            self._spare = _spare()
            return False
        except ConnectionAbortedError:
            self._spare = _spare()
            return True
        except OSError as exc:  # (a spawn's thread took the slot)
            self._spare = _spare()
            self._pause(exc)
            return False
        self._short_of_files(conn, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self._spare = _spare()
        return True

    def _pause(self, exc: OSError) -> None:
        """Accepting failed for want of something the system lacks: wait a
        moment with the clients left in the queue, and say so once."""
        if not self._warned:
            self._warned = True
            self._warn(f"control socket: cannot accept connections ({exc.strerror or exc}); trying again every {RETRY_S:g} s")
        self._loop.remove_reader(self._sock.fileno())
        self._retry = self._loop.call_later(RETRY_S, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._spare is None:
            self._spare = _spare()
        self._loop.add_reader(self._sock.fileno(), self._accept)
