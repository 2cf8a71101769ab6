"""The control socket: a Unix socket (0600, in a 0700 directory) that answers
only its owner's uid, one JSON line per request, dispatched by the table of
verbs (`protocol.VERBS`) to the engine's face (`engine.operations.Operations`).

A malformed, oversized or unknown request gets an error reply and the
supervisor runs on. Never renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from procctl.control.address import socket_location
from procctl.control.protocol import MAX_REQUEST_BYTES, VERBS, ProtocolError, Reply, Request, decode_request
from procctl.engine.operations import Operations
from procctl.engine.store import check_entry
from procctl.errors import AlreadyRunning, ProcctlError

_PEERCRED = struct.Struct("3i")
"""struct ucred: pid, uid, gid."""


def _socket_answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return _PEERCRED.unpack(creds)[1]


class ControlServer:
    def __init__(self, operations: Operations, path: Path, manifest: Path) -> None:
        self.ops = operations
        self.path = path
        self.manifest = manifest
        self._server: asyncio.AbstractServer | None = None
        self._dir_fd: int | None = None
        """The checked directory the socket is in (engine.store)."""

    async def start(self) -> None:
        location = socket_location(self.path, create=True)
        assert location is not None
        self._dir_fd, where = location
        if check_entry(self._dir_fd, self.path.name, shown=self.path, kind=stat.S_IFSOCK):
            if _socket_answers(where):
                raise AlreadyRunning(f"a supervisor is already running for {self.manifest} (socket {self.path})")
            # A socket left by a supervisor that died: replace it.
            os.unlink(self.path.name, dir_fd=self._dir_fd)
        self._server = await asyncio.start_unix_server(self._serve, path=where, limit=MAX_REQUEST_BYTES + 1)
        os.chmod(where, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass
            self._server = None
        if self._dir_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path.name, dir_fd=self._dir_fd)

    def handle(self, request: Request) -> Reply:
        """The verb's handler on the engine's face, by the table; whatever it
        raises becomes an error reply, and the supervisor serves on."""
        verb = VERBS[request.verb]
        try:
            result = getattr(self.ops, verb.handler)(**verb.call_args(request.args))
        except ProtocolError as exc:
            return Reply.failure(str(exc), 2, request.id)
        except ProcctlError as exc:
            return Reply.failure(str(exc), exc.exit_code, request.id)
        except (ValueError, OverflowError) as exc:
            # A value past what the system takes: an answer, not a dropped connection.
            return Reply.failure(f"{request.verb}: {exc}", 2, request.id)
        except Exception as exc:
            return Reply.failure(f"{request.verb} failed in the supervisor: {type(exc).__name__}: {exc}", 1, request.id)
        return Reply(ok=True, result=result, id=request.id)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or peer_uid(sock) != os.getuid():
                writer.write(Reply.failure("permission denied: not the owner of this supervisor", 1).encode())
                return
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        writer.write(Reply.failure("malformed request: no newline at the end").encode())
                    return
                except asyncio.LimitOverrunError:
                    writer.write(Reply.failure(f"request too large (at most {MAX_REQUEST_BYTES} bytes)").encode())
                    return
                try:
                    reply = self.handle(decode_request(line))
                except ProtocolError as exc:
                    reply = Reply.failure(str(exc), id=exc.id)
                writer.write(reply.encode())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(server: ControlServer) -> AsyncIterator[ControlServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.close()
