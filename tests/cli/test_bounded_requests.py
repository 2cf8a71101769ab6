"""Every count and size a control request can set is checked before anything
happens: a request past a bound gets a one-line error (exit 2 from the CLI,
an error reply on the socket), and the supervisor answers on, unchanged."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from typing import Any

import psutil
import pytest
from conftest import Project, wait_until


@pytest.fixture
def running(project: Project) -> Any:
    project.write('[process.web]\ncmd = "sleep 120"\n')
    proc = project.start("run", "--plain")
    def web_running() -> bool:
        status = project.run("status", "--json")
        return proc.poll() is not None or (status.returncode == 0 and json.loads(status.stdout)["instances"][0]["state"] == "running")

    # Running, not only answering: its start may still wait for its spawn.
    wait_until(web_running, what="web to run")
    assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _status(project: Project) -> dict[str, Any]:
    result = project.run("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _one_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procctl: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_scale_past_the_cap_is_refused_and_nothing_grows(project: Project, running: subprocess.Popen[bytes]) -> None:
    """1. `scale web=100000` (and 10**9) against a running supervisor.
    2. One line, exit 2, naming the cap; `status --json` answers with the one
       instance as before, and the supervisor's memory stayed where it was."""
    before = _status(project)
    rss_before = psutil.Process(before["pid"]).memory_info().rss
    for count in ("100000", "1000000000", "10001"):
        _one_line(project.run("scale", f"web={count}"), 2, "replicas must be 0 to 10,000", "the manifest's own cap", f"got {int(count):,}")
    after = _status(project)
    assert [row["name"] for row in after["instances"]] == ["web"] and after["pid"] == before["pid"]
    assert psutil.Process(after["pid"]).memory_info().rss < rss_before + 64 * 1024 * 1024


def test_limits_past_what_the_kernel_takes_are_usage_errors(project: Project, running: subprocess.Popen[bytes]) -> None:
    """`--nofile 2**70` was an OverflowError in the supervisor and a dropped
    connection; now every value past a bound is one line, exit 2."""
    for option, value, words in (
        ("--nofile", str(2**70), ("limits: nofile: must be 0 to", "got 1,180,591,620,717,411,303,424")),
        ("--nofile", "99999999", ("limits: nofile: nofile 99,999,999 is over",)),
        ("--nproc", str(2**63), ("limits: nproc: must be 0 to 4,611,686,018,427,387,904",)),
        ("--memory", "0", ("limits: memory: must be 1 to",)),
        ("--memory", "99999999999EiB", ("limits: memory",)),
        ("--cpu-time", "9" * 400 + "s", ("limits: cpu_time: expected a duration",)),
        ("--cpu-percent", "1e9", ("limits: cpu_percent: must be more than 0 to",)),
    ):
        _one_line(project.run("limits", "web", option, value), 2, *words)
    row = _status(project)["instances"][0]
    assert row["state"] == "running"
    assert project.run("limits", "web", "--nofile", "512").returncode == 0


def _raw(path: str, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw request lines on one connection; the replies."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_raw_requests_past_a_bound_get_an_error_reply(project: Project, running: subprocess.Popen[bytes]) -> None:
    """On the socket itself: each bad request gets its error reply (code 2)
    and the same connection answers the next request."""
    path = str(project.root / ".procctl" / "procctl.sock")
    bad = [
        {"id": 1, "verb": "scale", "args": {"process": "web", "replicas": 10**9}},
        {"id": 2, "verb": "scale", "args": {"process": "web", "replicas": -1}},
        {"id": 3, "verb": "send", "args": {"names": ["web"], "text": "x" * 20000}},
        {"id": 4, "verb": "limits", "args": {"names": ["web"], "set": {"nofile": 2**70}}},
        {"id": 5, "verb": "limits", "args": {"names": ["web"], "set": {"cpu_time": 1e308 * 10}}},
    ]
    lines = [json.dumps(request).encode() + b"\n" for request in bad]
    lines.append(b'{"id": 6, "verb": "limits", "args": {"names": ["web"], "set": {"cpu_percent": NaN}}}\n')
    lines.append(b'{"id": 7, "verb": "ping"}\n')
    replies = _raw(path, *lines)
    assert [reply["id"] for reply in replies] == [1, 2, 3, 4, 5, 6, 7]
    for reply in replies[:-1]:
        assert reply["ok"] is False and reply["code"] == 2, reply
    assert "10,000" in replies[0]["error"] and "longer than 16,384 bytes" in replies[2]["error"]
    assert replies[-1]["ok"] is True
    assert [row["name"] for row in _status(project)["instances"]] == ["web"]


def test_many_names_resolve_once_each(project: Project, running: subprocess.Popen[bytes]) -> None:
    """A request naming the same instance eight thousand times acts on it once."""
    path = str(project.root / ".procctl" / "procctl.sock")
    request = {"id": 1, "verb": "pause", "args": {"names": ["web"] * 8_000}}
    (reply,) = _raw(path, json.dumps(request).encode() + b"\n")
    assert reply["ok"] and reply["result"]["paused"] == ["web"]
    (reply,) = _raw(path, json.dumps({"id": 2, "verb": "resume", "args": {"names": ["web"] * 8_000}}).encode() + b"\n")
    assert reply["ok"] and reply["result"]["resumed"] == ["web"]
