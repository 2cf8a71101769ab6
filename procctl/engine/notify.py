"""Readiness, status and liveness by notification: systemd's sd_notify protocol.

Every instance finds in `NOTIFY_SOCKET` the address of one datagram socket the
supervisor owns (an abstract Unix address with a random name, so it needs no
file and vanishes with the supervisor, however it ends). A program that
speaks the protocol (libsystemd's `sd_notify`, `systemd-notify`, the many
small clients) sends newline-separated `KEY=VALUE` lines to it.

Who sent a datagram is what the kernel says (`SO_PASSCRED`): the sender's pid
must belong to the tree of a running instance (`tree.owner`),
systemd's `NotifyAccess=all`; anything else is refused. A sender other than
the instance's own process must still be alive when its datagram is read:
`systemd-notify` waits for that itself (it sends `BARRIER=1` with a
descriptor and waits until it is closed); the instance's own process is
known by its pid until its run is over, and what is queued is read first.

Nothing in a datagram is trusted beyond the documented keys and their
documented values: a datagram is at most 4096 bytes (larger is refused
whole), descriptors that come with it are closed unread, unknown keys and
malformed values are ignored, a status text is cut to 512 characters with
control characters replaced.
"""

from __future__ import annotations

import array
import asyncio
import os
import socket
import struct
from collections.abc import Callable
from typing import Generic, Literal, NamedTuple, TypeVar

MAX_DATAGRAM_BYTES = 4096
"""systemd's own bound (PIPE_BUF): a longer datagram is refused."""
MAX_FDS = 16
"""Room for descriptors in one datagram (BARRIER=1 sends one); all are closed."""
MAX_STATUS_CHARS = 512
MAX_USEC = 86_400 * 1_000_000
"""Durations a datagram may give (WATCHDOG_USEC, EXTEND_TIMEOUT_USEC): at most a day."""
MIN_WATCHDOG_USEC = 10_000
"""A watchdog shorter than 10 ms is refused (a process could not keep it)."""
MAX_PER_WAKE = 64
"""Datagrams read per wake-up of the loop before others get their turn."""
MAX_REPORTED_REFUSALS = 64
"""Distinct refused senders reported; past that, refusals are only counted."""

_UCRED = struct.Struct("3i")
"""struct ucred: pid, uid, gid."""


class Notification(NamedTuple):
    """What one datagram said, in the documented keys only."""

    ready: bool = False
    """READY=1: start-up is complete (or a reload is)."""
    status: str | None = None
    """STATUS=text: one line of free text about the process."""
    watchdog: Literal["ping", "trigger"] | None = None
    """WATCHDOG=1 keeps the watchdog from firing; WATCHDOG=trigger fires it now."""
    watchdog_usec: int | None = None
    """WATCHDOG_USEC=N: the watchdog's timeout from now on."""
    main_pid: int | None = None
    """MAINPID=N: the process the program says is its main one."""
    stopping: bool = False
    """STOPPING=1: it is shutting down of its own accord."""
    reloading: bool = False
    """RELOADING=1: it reloads its configuration; READY=1 follows when done."""
    extend_timeout_usec: int | None = None
    """EXTEND_TIMEOUT_USEC=N: give start-up N more microseconds from now."""
    barrier: bool = False
    """BARRIER=1: the sender waits until its descriptor is closed."""

    @property
    def empty(self) -> bool:
        return self == _EMPTY


_EMPTY = Notification()


def _usec(value: str, minimum: int = 0) -> int | None:
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    number = int(value)
    return number if minimum <= number <= MAX_USEC else None


def _printable(text: str) -> str:
    """One line of display text: control characters become spaces."""
    cut = text[:MAX_STATUS_CHARS]
    return "".join(ch if ch.isprintable() else " " for ch in cut).strip()


def parse(datagram: bytes) -> Notification:
    """The documented keys of one datagram; everything else is ignored."""
    fields: dict[str, object] = {}
    for raw in datagram.split(b"\n"):
        key, sep, value_bytes = raw.partition(b"=")
        if not sep:
            continue
        value = value_bytes.decode("utf-8", "replace")
        if key == b"READY" and value == "1":
            fields["ready"] = True
        elif key == b"STATUS":
            fields["status"] = _printable(value)
        elif key == b"WATCHDOG" and value in ("1", "trigger"):
            fields["watchdog"] = "ping" if value == "1" else "trigger"
        elif key == b"WATCHDOG_USEC":
            usec = _usec(value, MIN_WATCHDOG_USEC)
            if usec is not None:
                fields["watchdog_usec"] = usec
        elif key == b"MAINPID":
            if value.isascii() and value.isdigit() and 1 < int(value) < 2**22:
                fields["main_pid"] = int(value)
        elif key == b"STOPPING" and value == "1":
            fields["stopping"] = True
        elif key == b"RELOADING" and value == "1":
            fields["reloading"] = True
        elif key == b"EXTEND_TIMEOUT_USEC":
            usec = _usec(value)
            if usec is not None:
                fields["extend_timeout_usec"] = usec
        elif key == b"BARRIER" and value == "1":
            fields["barrier"] = True
    return Notification(**fields)  # type: ignore[arg-type]


def _passed(ancillary: list[tuple[int, int, bytes]]) -> tuple[int | None, list[int]]:
    """The sender's pid and the descriptors that came with a datagram."""
    pid: int | None = None
    passed: list[int] = []
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            passed.extend(fds)
        elif kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid = _UCRED.unpack(data[: _UCRED.size])[0]
    return pid, passed


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


Target = TypeVar("Target")


class NotifyServer(Generic[Target]):
    """The supervisor's notification socket.

    `resolve(pid)` says which target (an instance) a sender belongs to, or
    None; `deliver(target, pid, notification)` gets what it said;
    `refuse(pid, why)` hears of a datagram that was dropped (once per sender,
    for the first `MAX_REPORTED_REFUSALS` senders)."""

    def __init__(
        self,
        resolve: Callable[[int], Target | None],
        deliver: Callable[[Target, int, Notification], None],
        refuse: Callable[[int, str], None],
    ) -> None:
        self._resolve = resolve
        self._deliver = deliver
        self._refuse = refuse
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reported: set[int] = set()
        self.refused = 0
        """Datagrams refused so far."""
        self.address = ""
        """`NOTIFY_SOCKET` for the children: '@' and the abstract name."""

    def open(self) -> str:
        """Bind the socket and start reading it; returns its address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            for _ in range(8):
                # (os.urandom is what secrets.token_hex reads; the secrets module, with
                # hmac, hashlib and random, cost every run 2 ms to import.)
                name = f"procctl-notify-{os.getpid()}-{os.urandom(8).hex()}"
                try:
                    sock.bind("\0" + name)
                    break
                except OSError:
                    continue  # Taken (by chance, or by someone guessing): another name.
            else:
                raise OSError("no free abstract address for the notification socket")
            # Datagrams wait in the socket's queue while the loop is busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self.address = "@" + name
        return self.address

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def read_pending(self) -> None:
        """Read what is queued now (before a run is forgotten)."""
        self._on_readable()

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        ancillary_room = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(MAX_FDS * 4)
        for _ in range(MAX_PER_WAKE):
            try:
                data, ancillary, flags, _ = sock.recvmsg(MAX_DATAGRAM_BYTES, ancillary_room, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            pid, fds = _passed(ancillary)
            try:
                self._handle(data, flags, pid)
            finally:
                # Closed only once the datagram is handled: a barrier's sender
                # waits for this close and may exit at once, and a sender
                # gone (reaped) can no longer be told from its pid.
                _close_all(fds)

    def _handle(self, data: bytes, flags: int, pid: int | None) -> None:
        if pid is None or pid <= 0:
            self._refused(0, "a notification without credentials")
            return
        target = self._resolve(pid)
        if target is None:
            self._refused(pid, f"a notification from pid {pid}, which belongs to no instance")
            return
        if flags & socket.MSG_TRUNC:
            self._refused(pid, f"a notification from pid {pid} longer than {MAX_DATAGRAM_BYTES} bytes")
            return
        message = parse(data)
        if not message.empty:
            self._deliver(target, pid, message)

    def _refused(self, pid: int, why: str) -> None:
        self.refused += 1
        if pid in self._reported or len(self._reported) >= MAX_REPORTED_REFUSALS:
            return
        self._reported.add(pid)
        self._refuse(pid, f"refused {why}")
