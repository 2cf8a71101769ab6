"""One request, one reply. Never spawns; imports nothing heavy.

No socket, or nobody answering on it, is NoSupervisor (exit 3).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from procctl.control.address import socket_location
from procctl.control.protocol import MAX_REQUEST_BYTES, ProtocolError, Reply, decode_reply, make_request
from procctl.errors import NoSupervisor, ProcctlError, UsageError

REPLY_LIMIT = 64 * 1024 * 1024


class ControlError(ProcctlError):
    """The supervisor answered with an error; carries the code it chose."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def connect(path: Path, manifest: Path, timeout_s: float) -> socket.socket:
    location = socket_location(path, create=False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        if location is None:
            raise FileNotFoundError(path)
        sock.connect(location[1])
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise NoSupervisor(
            f"no supervisor is running for {manifest} (start one with 'procctl run' or 'procctl up -d')"
        ) from None
    except OSError as exc:
        sock.close()
        raise NoSupervisor(f"cannot reach the supervisor of {manifest}: {exc.strerror or exc}") from None
    return sock


def _read_line(sock: socket.socket) -> bytes:
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


def request(path: Path, manifest: Path, verb: str, args: dict[str, Any] | None = None, *, timeout_s: float = 30.0) -> Any:
    """Send one request; return the reply's result or raise its error. The
    request is checked against the table of verbs before it is sent."""
    try:
        payload = make_request(verb, args, id=1).encode()
    except ProtocolError as exc:
        raise UsageError(str(exc)) from None
    if len(payload) > MAX_REQUEST_BYTES:
        raise ProcctlError(f"request too large ({len(payload)} bytes)")
    sock = connect(path, manifest, timeout_s)
    try:
        sock.sendall(payload)
        line = _read_line(sock)
    except TimeoutError:
        raise ProcctlError(f"the supervisor of {manifest} did not answer within {timeout_s:g}s") from None
    except OSError as exc:
        raise NoSupervisor(f"lost the supervisor of {manifest}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not line:
        raise NoSupervisor(f"the supervisor of {manifest} closed the connection without answering")
    try:
        reply: Reply = decode_reply(line)
    except ProtocolError as exc:
        raise ProcctlError(str(exc)) from None
    if not reply.ok:
        raise ControlError(reply.error or "the supervisor refused the request", reply.code or 1)
    return reply.result
