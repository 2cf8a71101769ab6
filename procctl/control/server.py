"""The control socket: a Unix socket (0600, in a 0700 directory) that answers
only its owner's uid, one JSON line per request, dispatched by the table of
verbs (`protocol.VERBS`) to the engine's face (`engine.operations.Operations`).

A malformed, oversized or unknown request gets an error reply and the
supervisor runs on, and so does one not sent whole within
`protocol.REQUEST_TIMEOUT_S`: a client cannot hold a connection by never
finishing its request. How many connections are held, and what happens to
one past them, is control/listener.py's. A request that changes what runs
is announced on the bus (`events.Requested`, with the pid that asked), so
every view shows it. After
its reply, a `subscribe` request turns its connection into a stream of events
(control/subscription.py). Never renders.
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
from typing import Any

from procctl import events
from procctl.bus import Bus
from procctl.control import subscription
from procctl.control.address import socket_location
from procctl.control.listener import Listener
from procctl.control.protocol import MAX_REQUEST_BYTES, REQUEST_TIMEOUT_S, VERBS, ProtocolError, Reply, Request, decode_request
from procctl.engine.operations import Operations
from procctl.engine.safeopen import check_entry, where_now
from procctl.errors import AlreadyRunning, ProcctlError, StateDirError

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


def peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, _ = _PEERCRED.unpack(creds)
    return pid, uid


OWN = "procctl"


def _announcements(verb: str, args: dict[str, Any], result: Any) -> list[tuple[str, str]]:
    """(target, what it did) of a request that changed something; [] for
    one that only asked, or changed nothing."""
    names = args.get("names") or ([OWN] if args.get("all") else [])
    if verb == "pause":
        done = result.get("paused") or ([] if not result.get("queue_held") else [OWN])
        return [(name, "paused") for name in names] if done else []
    if verb == "resume":
        return [(name, "resumed") for name in names] if result.get("resumed") or args.get("all") else []
    if verb == "kill":
        if "signal" in result:
            return [(name, f"sent {result['signal']}") for name in names] if result.get("signalled") else []
        return [(name, "stop requested") for name in names] if result.get("stopping") else []
    if verb == "restart":
        return [(name, "restart requested") for name in names] if result.get("restarting") else []
    if verb == "start":
        return [(name, "start requested") for name in names] if result.get("starting") else []
    if verb == "scale":
        return [(args["process"], f"scaled to {args['replicas']}")] if result.get("added") or result.get("removed") else []
    if verb == "pool" and "size" in args:
        return [(OWN, f"pool resized to {args['size']}")]
    # `send` is told by its own `message` events: one per instance reached,
    # with the line and the instance that sent it.
    if verb == "limits" and args.get("set"):
        changed = ", ".join(f"{key} {value}" for key, value in args["set"].items())
        return [(name, f"limits changed: {changed}") for name in names]
    if verb == "reload" and not args.get("dry_run"):
        # What it changed is told by its `reload` events, one per process.
        changed = sum(1 for step in result.get("processes", ()) if step.get("action") != "unchanged")
        return [(OWN, f"reloaded the manifest: {changed} process{'es' if changed != 1 else ''} changed")]
    if verb == "shutdown":
        return [(OWN, "shutdown requested")]
    return []


SOCKET_CHECK_S = 1.0
"""How often the server checks that its socket is still there."""


class ControlServer:
    def __init__(self, operations: Operations, path: Path, manifest: Path, bus: Bus | None = None) -> None:
        self.ops = operations
        self.path = path
        self.manifest = manifest
        self.bus = bus
        """Where requests are announced, and what `subscribe` streams."""
        self._closing = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[None]] = set()
        """Every connection being served, by whichever listener took it."""
        self._listener: Listener | None = None
        self._dir_fd: int | None = None
        """The checked directory the socket is in (engine.safeopen)."""
        self._told_moved = False
        """Whether the log already says that the socket's path leads elsewhere now."""

    async def start(self) -> None:
        location = socket_location(self.path, create=True)
        assert location is not None
        self._dir_fd, where = location
        if check_entry(self._dir_fd, self.path.name, shown=self.path, kind=stat.S_IFSOCK):
            if _socket_answers(where):
                raise AlreadyRunning(f"a supervisor is already running for {self.manifest} (socket {self.path})")
            # A socket left by a supervisor that died: replace it.
            os.unlink(self.path.name, dir_fd=self._dir_fd)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(where)
            os.chmod(where, 0o600)
        except OSError:
            sock.close()
            raise
        self._listener = Listener(sock, self._connection, self._connections, self._warn)

    def _warn(self, message: str) -> None:
        if self.bus is not None:
            self.bus.publish(events.Notice(OWN, OWN, message=message, level="warning"))

    async def keep(self) -> None:
        """Lay the socket down again when it is removed while we run (a
        cleanup script, `rm -r .procctl`): `status` and `down` must always
        reach the one supervisor that holds the lock."""
        while True:
            await asyncio.sleep(SOCKET_CHECK_S)
            try:
                location = socket_location(self.path, create=False)
                if location is not None and check_entry(location[0], self.path.name, shown=self.path, kind=stat.S_IFSOCK):
                    self._tell_if_moved(location[0])
                    continue
            except StateDirError:
                continue  # Something else is there now: never touch it.
            old = self._listener
            try:
                await self.start()
            except (OSError, ProcctlError):
                continue
            if old is not None:
                old.close()

    def _tell_if_moved(self, dir_fd: int) -> None:
        """Say once in the log when the socket's path no longer leads to it:
        its directory (or one above) was moved, or replaced by another or a
        link. The supervisor serves on where the directory went, reached
        through the descriptor it held from its start (engine.safeopen.hold),
        and writes nothing where the path leads now."""
        try:
            there = os.stat(self.path, follow_symlinks=False)
            here = os.stat(self.path.name, dir_fd=dir_fd, follow_symlinks=False)
            moved = (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino)
        except OSError:
            moved = True
        if moved and not self._told_moved and self.bus is not None:
            message = (
                f"{self.path.parent} was moved or replaced: it no longer leads to this supervisor, which writes nothing there"
                f" and is serving on from {where_now(dir_fd)} (reach it there)"
            )
            self.bus.publish(events.Notice("procctl", "procctl", message=message, level="warning"))
        self._told_moved = moved

    async def close(self) -> None:
        # Subscribers get what is left, then the end of their stream.
        self._closing.set()
        if self._streams:
            await asyncio.wait(self._streams, timeout=2.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        # What is left: requests being read, streams that did not end in time.
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=1.0)
        if self._dir_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path.name, dir_fd=self._dir_fd)

    def handle(self, request: Request, client_pid: int | None = None) -> Reply:
        """The verb's handler on the engine's face, by the table; whatever it
        raises becomes an error reply, and the supervisor serves on. What it
        changed is announced on the bus, as asked by `client_pid`."""
        verb = VERBS[request.verb]
        kwargs = verb.call_args(request.args)
        if verb.caller:
            # Who asks is what the kernel says of the connection, never what the request says.
            kwargs[verb.caller] = client_pid or 0
        try:
            result = getattr(self.ops, verb.handler)(**kwargs)
        except ProtocolError as exc:
            return Reply.failure(str(exc), 2, request.id)
        except ProcctlError as exc:
            return Reply.failure(str(exc), exc.exit_code, request.id)
        except (ValueError, OverflowError) as exc:
            # A value past what the system takes: an answer, not a dropped connection.
            return Reply.failure(f"{request.verb}: {exc}", 2, request.id)
        except Exception as exc:
            return Reply.failure(f"{request.verb} failed in the supervisor: {type(exc).__name__}: {exc}", 1, request.id)
        if self.bus is not None and isinstance(result, dict):
            for target, detail in _announcements(request.verb, request.args, result):
                self.bus.publish(events.Requested(target, target, verb=request.verb, detail=detail, client_pid=client_pid))
        return Reply(ok=True, result=result, id=request.id)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After the reply to `subscribe`: every event to this client, from
        the moment its snapshot was taken."""
        task = asyncio.current_task()
        assert task is not None
        if self.bus is None:
            return
        backlog = subscription.Backlog()
        self.bus.subscribe(backlog)
        self._streams.add(task)
        try:
            await subscription.stream(backlog, reader, writer, self._closing)
        finally:
            self.bus.unsubscribe(backlog)
            self._streams.discard(task)

    async def _connection(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_REQUEST_BYTES + 1)
        except OSError:
            conn.close()
            return
        await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            pid, uid = peer(sock) if sock is not None else (None, None)
            if uid != os.getuid():
                writer.write(Reply.failure("permission denied: not the owner of this supervisor", 1).encode())
                return
            while True:
                try:
                    # A whole request in bounded time, from the connection
                    # or the last reply; a subscription's stream has none.
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), REQUEST_TIMEOUT_S)
                except TimeoutError:
                    writer.write(
                        Reply.failure(f"no whole request within {REQUEST_TIMEOUT_S:g} s (a request ends with a newline): closing the connection").encode()
                    )
                    return
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        writer.write(Reply.failure("malformed request: no newline at the end").encode())
                    return
                except asyncio.LimitOverrunError:
                    writer.write(Reply.failure(f"request too large (at most {MAX_REQUEST_BYTES} bytes)").encode())
                    return
                try:
                    request = decode_request(line)
                    reply = self.handle(request, pid)
                except ProtocolError as exc:
                    request, reply = None, Reply.failure(str(exc), id=exc.id)
                if request is not None and request.verb == "subscribe" and reply.ok:
                    # The backlog starts in the same turn of the loop as the
                    # snapshot was taken: no event falls between them.
                    writer.write(reply.encode())
                    await self._stream(reader, writer)
                    return
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
    keeper = asyncio.get_running_loop().create_task(server.keep())
    try:
        yield server
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await server.close()
