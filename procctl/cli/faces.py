"""The two sides the interactive view can be on (ui/face.py's `Supervision`):
the adapters between the control plane and the view, wired here at the edge.

`InProcess`: `procctl run`'s own supervisor. A key in the view becomes a
control request handled by the very `ControlServer.handle` that answers the
socket (encoded and checked the same way), and the view subscribes to the
bus directly.

`Attached`: `procctl top`, a connection to a running supervisor. A key
becomes the same request sent the way `procctl pause` sends it, and events
arrive through the `subscribe` verb, decoded back into the same events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from procctl import events
from procctl.bus import Bus, EventQueue
from procctl.control import client
from procctl.control.protocol import ProtocolError, Request, decode_reply, decode_request, make_request
from procctl.control.server import ControlServer
from procctl.errors import NoSupervisor, ProcctlError, UsageError
from procctl.records import from_record
from procctl.states import State
from procctl.ui.live_model import InstanceInfo

VIEW_OUTPUT_EVENTS = 512
"""Output events the view's queue holds before it drops the oldest."""
RECORD_LIMIT = 16 << 20
"""Longest record line `Attached` reads (an output line may be long)."""
BACKLOG_LINES = 1000
"""Lines of its instances' logs a fresh `top` shows from before it attached."""
BACKLOG_LOGS = 50
"""Logs read for them: those written to last (at a thousand instances,
reading every log would hold the view back by seconds)."""


class InProcess:
    """The supervisor of this process."""

    attached = False

    def __init__(self, server: ControlServer, bus: Bus, instances: Sequence[InstanceInfo], max_parallel: int,
                 interrupt: Callable[[], None]) -> None:
        self._server = server
        self._interrupt = interrupt
        self.queue = EventQueue(max_output_events=VIEW_OUTPUT_EVENTS)
        bus.subscribe(self.queue)
        self.instances = list(instances)
        self.max_parallel = max_parallel
        self.seed: list[events.Event] = []
        self.backlog: list[events.Output] = []
        self.client_pid = os.getpid()
        self.ended = False

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        try:
            # Checked and read back exactly as a request off the socket is.
            request = decode_request(make_request(verb, args).encode())
        except ProtocolError as exc:
            raise UsageError(str(exc)) from None
        reply = self._server.handle(request, self.client_pid)
        if not reply.ok:
            raise client.ControlError(reply.error or "refused", reply.code or 1)
        return reply.result

    def leave(self) -> None:
        # Exactly what Ctrl-C does outside the view: the supervisor's signal
        # capture stops gracefully the first time and forces the second.
        self._interrupt()


class Attached:
    """A running supervisor, over its control socket."""

    attached = True

    def __init__(self, path: Path, manifest: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 snapshot: dict[str, Any]) -> None:
        self._path = path
        self._manifest = manifest
        self._reader = reader
        self._writer = writer
        self.queue = EventQueue(max_output_events=VIEW_OUTPUT_EVENTS)
        status = snapshot["status"]
        self.max_parallel = int(status.get("max_parallel") or 1)
        self.instances = [
            InstanceInfo(str(row["name"]), str(row["process"]), str(row.get("log") or ""), each=bool(row.get("each")), pooled=bool(row.get("pooled")))
            for row in snapshot.get("instances", [])
        ]
        self.seed = _seed(status)
        self.backlog: list[events.Output] = []
        self.client_pid = os.getpid()
        self.ended = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, path: Path, manifest: Path) -> Attached:
        """Subscribe; NoSupervisor when nobody answers."""
        import socket

        # The client's bare socket, as the socket module's, which asyncio takes.
        sock = socket.socket(fileno=client.connect(path, manifest, 10.0).detach())
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=RECORD_LIMIT)
        # Lines that arrived before this instant come from the log files,
        # the rest through the subscription: none twice.
        before = time.time()
        try:
            writer.write(Request(verb="subscribe", args={}, id=1).encode())
            line = await asyncio.wait_for(reader.readline(), 30.0)
            if not line:
                raise NoSupervisor(f"the supervisor of {manifest} closed the connection without answering")
            reply = decode_reply(line)
            if not reply.ok:
                raise client.ControlError(reply.error or "refused", reply.code or 1)
        except BaseException:
            writer.close()
            raise
        face = cls(path, manifest, reader, writer, reply.result)
        face._task = asyncio.get_running_loop().create_task(face._read())
        face.backlog = await asyncio.to_thread(_backlog, manifest, face.instances, before)
        return face

    async def _read(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    record = json.loads(line)
                    if record.get("event") == "lagged":
                        self.queue.dropped.update({str(k): int(v) for k, v in record["lines"].items()})
                        continue
                    event = from_record(record)
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a record this version cannot read
                if event is not None:
                    self.queue(event)
        except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.ended = True

    async def call(self, verb: str, args: dict[str, Any]) -> Any:
        return await asyncio.to_thread(client.request, self._path, self._manifest, verb, args)

    def leave(self) -> None:
        """The supervisor runs on; `close` hangs up."""

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def _backlog(manifest: Path, instances: Sequence[InstanceInfo], before: float) -> list[events.Output]:
    """The last lines the instances wrote before `before`, merged by time,
    as the output events they were (at most BACKLOG_LINES in all). Logs that
    cannot be read give none: the view still shows what comes next."""
    from procctl.engine.lines import LineSplitter
    from procctl.engine.logread import RunLogs, interleave
    from procctl.engine.store import StateDir

    try:
        run_logs = RunLogs(StateDir.beside(manifest))
        if run_logs.fd is None:
            return []
        written: dict[str, float] = {}
        with os.scandir(run_logs.fd) as found:
            for file in found:
                if file.name.endswith(".log"):
                    stat = file.stat(follow_symlinks=False)
                    if stat.st_size:
                        written[file.name] = stat.st_mtime
        logged = [info for info in instances if info.log_path and Path(info.log_path).name in written]
        logged = sorted(logged, key=lambda info: written[Path(info.log_path).name])[-BACKLOG_LOGS:]
        if not logged:
            return []
        each = max(BACKLOG_LINES // len(logged), 20)
        streams = [run_logs.lines(Path(info.log_path).name, info.name, last=each) for info in logged]
    except (OSError, ProcctlError):
        return []
    process = {info.name: info.process for info in logged}
    backlog = []
    # A line without its newline is still being written: it arrives whole
    # through the subscription.
    for entry in interleave(streams)[-BACKLOG_LINES:]:
        if entry.ts is not None and entry.ts < before and entry.line.endswith(b"\n"):
            text = LineSplitter().feed(entry.line)
            backlog.append(events.Output(process[entry.instance], entry.instance, stream="stdout", text=text, ts=entry.ts))
    return backlog


def _seed(status: dict[str, Any]) -> list[events.Event]:
    """Events that bring a fresh view to where the supervisor is now."""
    now = time.time()
    seeded: list[events.Event] = []
    for row in status.get("instances", []):
        name, process = str(row["name"]), str(row["process"])
        try:
            state = State(row["state"])
        except ValueError:
            continue
        if row.get("pid"):
            started = now - float(row.get("uptime_s") or 0.0)
            seeded.append(events.Started(process, name, pid=int(row["pid"]), attempt=int(row.get("restarts") or 0) + 1, ts=started))
        elif row.get("exit_code") is not None or row.get("signal") is not None:
            seeded.append(events.Exited(process, name, status=state, code=row.get("exit_code"), signal=row.get("signal"), duration_s=0.0, ts=now))
        seeded.append(events.StateChanged(process, name, state=state, reason=str(row.get("reason") or ""), ts=now))
    return seeded
