"""Readiness probes: log, tcp, http, exec, notify. Each answers whether it
passed; the supervisor decides what follows."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from procctl.config.manifest import ReadySpec


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


async def _tcp_once(host: str, port: int, timeout_s: float) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


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
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout_s) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


def substitute_port(target: str, env: Mapping[str, str]) -> str:
    port = env.get("PORT")
    return target.replace("{port}", port) if port else target


async def poll_probe(
    spec: ReadySpec, *, cwd: Path, env: Mapping[str, str], log_probe: LogProbe | None, notify_probe: NotifyProbe | None = None
) -> bool:
    """Try the probe until it passes (True) or `spec.timeout_s` runs out (False)."""
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
        if spec.kind == "tcp":
            host, _, port = target.rpartition(":")
            ok = await _tcp_once(host or "127.0.0.1", int(port), attempt_timeout)
        elif spec.kind == "http":
            ok = await _http_once(target, attempt_timeout)
        else:
            ok = await _exec_once(target, cwd, env, attempt_timeout)
        if ok:
            return True
        await asyncio.sleep(min(spec.interval_s, max(deadline - time.monotonic(), 0)))
