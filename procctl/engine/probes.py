"""Readiness probes (log, tcp, http, exec, notify) and liveness probes (tcp,
http, exec). Each answers whether it passed; the runner decides what
follows.

A tcp or http probe passes only when the listener belongs to the instance's
own tree: a port another process holds answers the probe too, and would make
a service ready that is about to fail with "address already in use". That
is told at once (`PortHeld`), naming the holder.

An exec probe's command runs as the engine runs a child (`process.Child`)
and ends with its whole tree: nothing it started outlives its attempt."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from procctl.config.manifest import LivenessSpec, ProcessSpec, ReadySpec
from procctl.engine.process import Child
from procctl.errors import SpawnError


class LogProbe:
    """Passes when a line of the instance's output matches the pattern."""

    def __init__(self, pattern: str) -> None:
        self._regex = re.compile(pattern, re.MULTILINE)
        self.passed = asyncio.Event()

    def feed(self, lines: str) -> None:
        if not self.passed.is_set() and self._regex.search(lines):
            self.passed.set()


class NotifyProbe:
    """Passes when the process sends READY=1 to its notification socket. It
    may ask for more time first (EXTEND_TIMEOUT_USEC=)."""

    def __init__(self) -> None:
        self.passed = asyncio.Event()
        self.extended_until: float | None = None
        """Monotonic time the process asked to be given until, if it did."""

    def extend(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        self.extended_until = max(self.extended_until or until, until)


async def _wait_notified(probe: NotifyProbe, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = max(deadline, probe.extended_until or deadline) - time.monotonic()
        if remaining <= 0:
            return probe.passed.is_set()
        try:
            await asyncio.wait_for(probe.passed.wait(), remaining)
            return True
        except TimeoutError:
            continue  # Unless the deadline moved meanwhile, the next turn ends.


def _answered(writer: asyncio.StreamWriter) -> bool:
    """Whether a connection reached a listener. One to a port of this
    machine where nothing listens can connect to itself: when the kernel
    picks the destination port as the connection's own source port (a
    port in the ephemeral range), the handshake meets itself. That
    connection answers nothing; it also holds the port until closed."""
    sock = writer.get_extra_info("socket")
    try:
        return sock is None or sock.getsockname() != sock.getpeername()
    except OSError:
        return False


async def _tcp_once(host: str, port: int, timeout_s: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    answered = _answered(writer)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return answered


async def _http_once(url: str, timeout_s: float) -> bool:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        if not _answered(writer):
            return False
        request = f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1", "replace"))
        status_line = await asyncio.wait_for(reader.readline(), timeout_s)
        fields = status_line.split()
        return len(fields) >= 2 and fields[1][:1] in (b"2", b"3")
    except (OSError, TimeoutError, ValueError):
        return False
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _exec_once(command: str, cwd: Path, env: Mapping[str, str], timeout_s: float) -> bool:
    """Run `command` as the engine runs a child (its own session, stdio on
    /dev/null); it passes when it exits 0. It ends with its whole tree, as a
    stop ends a service's: what it leaves in its group when it exits is
    killed (`Child.wait`); past `timeout_s`, or cut short (its run ended,
    the supervisor is stopping), its group and every descendant are
    SIGKILLed. SIGKILL at once, with no grace: an answer past the timeout
    no longer counts, and the next attempt must not meet this one.
    (process-compose, and Kubernetes through its container runtime, SIGKILL
    a late exec probe too, but only the process they started: what that
    started piles up.)"""
    child = Child(command, cwd=cwd, env=env)
    try:
        await child.start()
    except SpawnError:
        return False
    # Shielded: a wait cut short cannot be awaited again (its exit's
    # future is cancelled with it), and after the kill it is awaited.
    ending = asyncio.ensure_future(child.wait())
    try:
        ended = await asyncio.wait_for(asyncio.shield(ending), timeout_s)
    except TimeoutError:
        child.kill()
        await ending
        return False
    except asyncio.CancelledError:
        # `ending` ends on its own once the kill has reaped it.
        child.kill()
        raise
    return ended.returncode == 0


def substitute_port(target: str, env: Mapping[str, str]) -> str:
    port = env.get("PORT")
    return target.replace("{port}", port) if port else target


class PortHeld(Exception):
    """The probe's port is held by a process outside the instance's tree."""


def endpoint(kind: str, target: str) -> tuple[str, int] | None:
    """(host, port) a tcp or http probe connects to; None for other kinds
    (or a target that names no port)."""
    try:
        if kind == "tcp":
            host, _, port = target.rpartition(":")
            return host.strip("[]") or "127.0.0.1", int(port)
        if kind == "http":
            parts = urllib.parse.urlsplit(target)
            return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        pass
    return None


async def held_before_start(kind: str, target: str) -> None:
    """Raise PortHeld when a process of this machine already listens where
    the probe would connect (the instance has not started yet: it is
    someone else)."""
    where = endpoint(kind, target)
    if where is None:
        return
    from procctl.engine import ports  # (only tcp and http probes use it: not at every run's start)

    holders = await asyncio.to_thread(ports.listeners, *where)
    if holders:
        raise PortHeld(f"{where[0]}:{where[1]} is already held by {ports.describe(holders)}")


async def port_held(spec: ProcessSpec, env: Mapping[str, str]) -> str:
    """Why a process cannot start: the port its tcp or http probe would ask
    is held already (by a process that cannot be its own: it has not
    started). '' when nothing holds it."""
    for probe in (spec.ready, spec.liveness):
        if probe is not None and probe.kind in ("tcp", "http"):
            try:
                await held_before_start(probe.kind, substitute_port(probe.target, env))
            except PortHeld as exc:
                return f"port {exc}"
    return ""


async def _owned(kind: str, target: str, root: int | None) -> bool:
    """After a connection succeeded: whether the listener is of the tree of
    `root`. Raises PortHeld when only other processes listen there."""
    where = endpoint(kind, target)
    if root is None or where is None:
        return True
    from procctl.engine import ports

    ours, others = await asyncio.to_thread(ports.strangers, *where, (root,))
    if ours or not others:
        # (No listener of this machine at all: the target is elsewhere.)
        return True
    raise PortHeld(f"{where[0]}:{where[1]} answers, but is held by {ports.describe(others)}, not by its own processes")


async def attempt(kind: str, target: str, *, cwd: Path, env: Mapping[str, str], timeout_s: float, root: int | None) -> bool:
    """One try of a tcp, http or exec probe. A tcp or http one passes only
    for a listener of the tree of `root` (PortHeld when another holds it)."""
    if kind == "tcp":
        host, port = endpoint(kind, target) or ("127.0.0.1", 0)
        ok = await _tcp_once(host, port, timeout_s)
    elif kind == "http":
        ok = await _http_once(target, timeout_s)
    else:
        return await _exec_once(target, cwd, env, timeout_s)
    return ok and await _owned(kind, target, root)


async def poll_probe(
    spec: ReadySpec,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_probe: LogProbe | None,
    notify_probe: NotifyProbe | None = None,
    root: int | None = None,
) -> bool:
    """Try the probe until it passes (True) or `spec.timeout_s` runs out
    (False). `root` is the instance's process, whose tree must hold a tcp or
    http probe's listener; PortHeld when another process holds it."""
    deadline = time.monotonic() + spec.timeout_s
    if spec.kind == "notify":
        assert notify_probe is not None
        return await _wait_notified(notify_probe, spec.timeout_s)
    if spec.kind == "log":
        assert log_probe is not None
        try:
            await asyncio.wait_for(log_probe.passed.wait(), spec.timeout_s)
            return True
        except TimeoutError:
            return False
    target = substitute_port(spec.target, env)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        attempt_timeout = min(remaining, max(spec.interval_s * 4, 1.0))
        if await attempt(spec.kind, target, cwd=cwd, env=env, timeout_s=attempt_timeout, root=root):
            return True
        await asyncio.sleep(min(spec.interval_s, max(deadline - time.monotonic(), 0)))


_LIVENESS_MISSES = {
    "tcp": "no connection within {timeout}",
    "http": "no 2xx or 3xx answer within {timeout}",
    "exec": "the command failed or took over {timeout}",
}


async def watch_liveness(spec: LivenessSpec, *, cwd: Path, env: Mapping[str, str], root: int | None) -> str:
    """Probe every `spec.interval_s` for as long as the run lives; return why
    once `spec.failures` probes in a row have failed."""
    target = substitute_port(spec.target, env)
    failed = 0
    while True:
        await asyncio.sleep(spec.interval_s)
        try:
            ok = await attempt(spec.kind, target, cwd=cwd, env=env, timeout_s=spec.timeout_s, root=root)
            why = _LIVENESS_MISSES[spec.kind].format(timeout=f"{spec.timeout_s:g}s")
        except PortHeld as exc:
            ok, why = False, str(exc)
        failed = 0 if ok else failed + 1
        if failed >= spec.failures:
            return f"liveness probe ({spec.kind} {target}) failed {failed} time{'s' if failed != 1 else ''} in a row: {why}"
