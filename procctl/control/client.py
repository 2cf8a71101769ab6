"""One request, one reply. Never spawns; imports nothing heavy.

No socket, or nobody answering on it, is NoSupervisor (exit 3).
"""

from __future__ import annotations

import os
import time

# The socket module's Python layer (its enums, selectors) costs a fifth of
# what `status --json` adds to Python's own start; a Unix stream socket needs
# none of it.
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as Socket
from pathlib import Path
from typing import Any

from procctl.control.address import socket_location
from procctl.control.protocol import MAX_REQUEST_BYTES, REQUEST_TIMEOUT_S, ProtocolError, Reply, decode_reply, make_request
from procctl.errors import NoAnswer, NoSupervisor, NotRunning, ProcctlError, UsageError

REPLY_LIMIT = 64 * 1024 * 1024


class ControlError(ProcctlError):
    """The supervisor answered with an error; carries the code it chose."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def connect(path: Path, manifest: Path, timeout_s: float) -> Socket:
    location = socket_location(path, create=False)
    sock = Socket(AF_UNIX, SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        if location is None:
            raise FileNotFoundError(path)
        sock.connect(location[1])
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NotRunning(f"no supervisor is running for {manifest} (start one with 'procctl run' or 'procctl up -d')") from None
    except OSError as exc:
        sock.close()
        raise NoSupervisor(f"cannot reach the supervisor of {manifest}: {exc.strerror or exc}") from None
    return sock


def _read_line(sock: Socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > REPLY_LIMIT:
            break
    return b"".join(chunks)


def _encode(verb: str, args: dict[str, Any] | None, request_id: int) -> bytes:
    """A request line, checked against the table of verbs (UsageError)."""
    try:
        payload = make_request(verb, args, id=request_id).encode()
    except ProtocolError as exc:
        raise UsageError(str(exc)) from None
    if len(payload) > MAX_REQUEST_BYTES:
        raise ProcctlError(f"request too large ({len(payload)} bytes)")
    return payload


IDLE_REUSE_S = REQUEST_TIMEOUT_S / 2
"""A connection left unused longer than this is not used again: the
supervisor closes one that sends no request within REQUEST_TIMEOUT_S."""


class Connection:
    """Requests one after another on one connection (a transfer in many
    pieces: `shm read`, `shm write`). Each request is checked against the
    table of verbs before it is sent. After a pause (stdin slow to come,
    stdout slow to take) the next request goes on a new connection."""

    def __init__(self, path: Path, manifest: Path, *, timeout_s: float = 30.0) -> None:
        self.path = path
        self.manifest = manifest
        self.timeout_s = timeout_s
        self._sock = connect(path, manifest, timeout_s)
        self._used = time.monotonic()
        self._next_id = 1

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def call(self, verb: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request; return the reply's result or raise its error."""
        payload = _encode(verb, args, self._next_id)
        self._next_id += 1
        manifest = self.manifest
        if time.monotonic() - self._used > IDLE_REUSE_S:
            self._sock.close()
            self._sock = connect(self.path, manifest, self.timeout_s)
        try:
            try:
                self._sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # Answered before it read the request (`busy`): the answer is there to read.
            line = _read_line(self._sock)
        except TimeoutError:
            raise NoAnswer(f"the supervisor of {manifest} did not answer within {self.timeout_s:g}s") from None
        except OSError as exc:
            raise NoSupervisor(f"lost the supervisor of {manifest}: {exc.strerror or exc}") from None
        if not line:
            raise NoSupervisor(f"the supervisor of {manifest} closed the connection without answering")
        self._used = time.monotonic()
        try:
            reply: Reply = decode_reply(line)
        except ProtocolError as exc:
            raise ProcctlError(str(exc)) from None
        if not reply.ok:
            raise ControlError(reply.error or "the supervisor refused the request", reply.code or 1)
        return reply.result


def request(path: Path, manifest: Path, verb: str, args: dict[str, Any] | None = None, *, timeout_s: float = 30.0) -> Any:
    """Send one request; return the reply's result or raise its error. A bad
    request is refused before any connection."""
    _encode(verb, args, 1)
    with Connection(path, manifest, timeout_s=timeout_s) as connection:
        return connection.call(verb, args)


SOCKET_BACK_S = 3.0
"""How long a client waits for a running supervisor to lay its removed
socket down again (it looks every `server.SOCKET_CHECK_S`)."""


class Unreachable(NoSupervisor):
    """A supervisor runs (it holds the lock; `pid` proven) but does not
    answer on its socket."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def call(file: str | os.PathLike[str] | None, verb: str, args: dict[str, Any] | None = None, *, timeout_s: float = 30.0) -> Any:
    """One request to the supervisor of `file` (see `address.supervisor_of`).
    When its socket is gone (removed by hand) but the supervisor still runs,
    wait a moment for it to lay the socket down again; if it does not,
    raise `Unreachable` with its pid."""
    from procctl.control.address import state_dir_of, supervisor_of

    path, manifest = supervisor_of(file)
    try:
        return request(path, manifest, verb, args, timeout_s=timeout_s)
    except NoSupervisor as exc:
        pid = state_dir_of(path, manifest).supervisor_pid()
        if pid is None:
            raise
        first = exc
    deadline = time.monotonic() + SOCKET_BACK_S
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            return request(path, manifest, verb, args, timeout_s=timeout_s)
        except NoSupervisor:
            continue
    raise Unreachable(
        f"the supervisor of {manifest} runs (pid {pid}) but does not answer on {path} ({first}); 'procctl down' stops it by its pid",
        pid,
    )
