"""The control socket's `subscribe` verb: events and output streamed to
several clients at once, with back-pressure — a stuck client never holds up
the supervisor or the others."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, Project, started, wait_until

TICKER = f"{PY} -u -c \"import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.05)\""


def _start(project: Project, *args: str) -> subprocess.Popen[bytes]:
    proc = project.start("run", "--plain", *args)
    wait_until(lambda: started(project.status()) or proc.poll() is not None, what="the supervisor to answer")
    assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


class Subscriber:
    """A raw client of the socket: subscribes, then (unless `stuck`) reads
    records on a thread."""

    def __init__(self, project: Project, *, read: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(str(project.root / ".procctl" / "procctl.sock"))
        self.sock.sendall(b'{"id": 1, "verb": "subscribe"}\n')
        self.file = self.sock.makefile("rb")
        self.reply = json.loads(self.file.readline())
        self.records: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self._thread: threading.Thread | None = None
        if read:
            self.read()

    def read(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.file:
                self.records.append(json.loads(line))
        except (OSError, ValueError):
            pass
        self.closed.set()

    def lines(self, instance: str) -> list[str]:
        return [r["line"] for r in list(self.records) if r["event"] == "output" and r["instance"] == instance]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self._thread is not None:
            self._thread.join(timeout=10)


def test_subscribers_get_a_snapshot_then_every_event_and_who_asked_for_what(project: Project) -> None:
    """1. Two clients subscribe to a running supervisor: each gets a snapshot
       (status, instances with their log files), then the same lines.
    2. `procctl pause ticker` from a third process: both see the request,
       with that process's pid, and the paused event; `status` still answers.
    3. When the supervisor stops, both streams end."""
    project.write(f"""
        [process.ticker]
        cmd = '''{TICKER}'''
    """)
    proc = _start(project)
    subscribers: list[Subscriber] = []
    try:
        subscribers = [Subscriber(project), Subscriber(project)]
        for sub in subscribers:
            assert sub.reply["ok"] is True
            snapshot = sub.reply["result"]
            assert [row["name"] for row in snapshot["status"]["instances"]] == ["ticker"]
            (info,) = snapshot["instances"]
            assert info["process"] == "ticker" and Path(info["log"]) == project.logs / "ticker.log" and info["each"] is False
        for sub in subscribers:
            wait_until(lambda: len(sub.lines("ticker")) >= 3, what="lines of ticker on each stream")
        # The same lines, in order, none missing, on both.
        ticks = [[int(line.split()[1]) for line in sub.lines("ticker")] for sub in subscribers]
        for numbers in ticks:
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        wait_until(lambda: int(subscribers[0].lines("ticker")[-1].split()[1]) > max(ticks[1]), what="the first stream to pass the second")
        pauser = project.start("pause", "ticker")
        assert pauser.wait(timeout=30) == 0
        for sub in subscribers:
            request = wait_until(lambda: next((r for r in list(sub.records) if r["event"] == "request"), None), what="the request on each stream")
            assert request == {**request, "verb": "pause", "detail": "paused", "name": "ticker", "client_pid": pauser.pid}
            wait_until(lambda: any(r["event"] == "paused" for r in list(sub.records)), what="the paused event")
        assert project.run("status", "--json").returncode == 0
        assert _stop(proc) == 130
        for sub in subscribers:
            assert sub.closed.wait(timeout=30), "the stream did not end with the supervisor"
            assert any(r["event"] == "exited" and r["instance"] == "ticker" for r in sub.records)
    finally:
        for sub in subscribers:
            sub.close()
        _stop(proc)


FLOOD = f"{PY} -u -c \"import sys, time\nline = b'x' * 99 + b'\\\\n'\nwhile True:\n    sys.stdout.buffer.write(line * 2000)\n    sys.stdout.flush()\n    time.sleep(0.02)\""


@pytest.mark.slow
def test_a_stuck_subscriber_holds_up_nobody_and_skips_ahead_with_a_count(project: Project) -> None:
    """1. A child writes ~10 MB/s; one client subscribes and never reads.
    2. Meanwhile `status` keeps answering, and a second client keeps getting
       the ticker's lines as they come.
    3. When the stuck client reads at last, it is told how many lines it
       missed (a `lagged` record) and carries on with current events."""
    project.write(f"""
        [process.flood]
        cmd = '''{FLOOD}'''
        [process.ticker]
        cmd = '''{TICKER}'''
    """)
    proc = _start(project, "-j", "4")
    stuck: Subscriber | None = None
    live: Subscriber | None = None
    try:
        stuck = Subscriber(project, read=False)
        live = Subscriber(project)
        # Well past what the socket buffers and the client's backlog hold.
        wait_until(lambda: project.log_size("flood") > 40 << 20, timeout=120, what="the flood to write 40 MB")
        for _ in range(3):
            assert project.run("status", "--json").returncode == 0
        seen = len(live.lines("ticker"))
        wait_until(lambda: len(live.lines("ticker")) > seen + 5, what="the ticker's lines on the live stream")
        stuck.read()
        lagged = wait_until(lambda: next((r for r in list(stuck.records) if r["event"] == "lagged"), None), timeout=60,
                            what="a lagged record on the stuck stream")
        assert lagged["lines"]["flood"] > 1000  # type: ignore[index]
        after = len(stuck.lines("ticker"))
        wait_until(lambda: len(stuck.lines("ticker")) > after + 3, timeout=60, what="current lines after the lag")
    finally:
        for sub in (stuck, live):
            if sub is not None:
                sub.close()
        assert _stop(proc) == 130


def test_subscribe_takes_no_arguments(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 30"\n')
    proc = _start(project)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(project.root / ".procctl" / "procctl.sock"))
        sock.sendall(b'{"id": 1, "verb": "subscribe", "args": {"since": 3}}\n')
        reply = json.loads(sock.makefile("rb").readline())
        sock.close()
        assert reply == {"id": 1, "ok": False, "error": "subscribe: unknown argument 'since'", "code": 2}
        assert project.run("status", "--json").returncode == 0
    finally:
        _stop(proc)
