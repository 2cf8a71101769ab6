"""The control socket stays up for its owner's other clients whatever one
client sends or holds open: a request nested too deeply is answered like any
malformed one, a connection gets a bounded time to send its whole request,
connections past the cap are answered `busy`, and a flood of them leaves
no traceback in the supervisor's log (docs/control-protocol.md, "Limits")."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
from collections.abc import Iterator

import pytest

from conftest import Project, alive, wait_until

SERVICE = '[process.svc]\ncmd = "sleep 600"\n'


@pytest.fixture
def detached(project: Project) -> Iterator[int]:
    """`up -d` of one service; its supervisor's pid. Stopped (by pid) at the end."""
    project.write(SERVICE)
    up = project.run("up", "-d")
    assert up.returncode == 0, up
    status = project.run("status", "--json")
    assert status.returncode == 0, status
    pid: int = json.loads(status.stdout)["pid"]
    try:
        yield pid
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive(pid), timeout=60, what="the supervisor to stop")


def _socket_path(project: Project) -> str:
    return str(project.root / ".procctl" / "procctl.sock")


def _supervisor_log(project: Project) -> str:
    return (project.root / ".procctl" / "supervisor.log").read_text(errors="replace")


def _connect(path: str, timeout_s: float = 30.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _line(sock: socket.socket) -> bytes:
    """The first line the supervisor sends from now on (b"" when it hung up
    without one); what follows it in the same read is left unread."""
    data = b""
    while b"\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0] + b"\n" if b"\n" in data else data


def _answers(project: Project) -> bool:
    return project.run("status", "--json").returncode == 0


def test_a_request_nested_too_deeply_gets_an_error_reply(project: Project, detached: int) -> None:
    """1. `[` × 50,000 and a newline (within the size bound) on the socket.
    2. An error reply, code 2, as any malformed request gets; the same
       connection answers `ping` next.
    3. The supervisor runs on, and its log holds no traceback."""
    with _connect(_socket_path(project)) as sock:
        sock.sendall(b"[" * 50_000 + b"\n")
        reply = json.loads(_line(sock))
        assert reply["ok"] is False and reply["code"] == 2, reply
        assert reply["error"].startswith("malformed request: nested too deeply"), reply
        sock.sendall(b'{"id": 2, "verb": "ping"}\n')
        pong = json.loads(_line(sock))
        assert pong["ok"] is True and pong["id"] == 2 and pong["result"]["pid"] == detached
    assert _answers(project)
    assert "Traceback" not in _supervisor_log(project) and "RecursionError" not in _supervisor_log(project)


@pytest.mark.slow
def test_an_unfinished_request_is_answered_and_closed_but_a_subscription_stays(project: Project, detached: int) -> None:
    """1. A client subscribes; another sends half a request and nothing more.
    2. Once its time is up, the second gets an error reply saying why, and
       the end of the connection.
    3. The subscription, older than that, still carries events: a `pause`
       from another client arrives on it as its `request` event."""
    path = _socket_path(project)
    with _connect(path) as subscriber, _connect(path, timeout_s=60) as slow:
        subscriber.sendall(b'{"id": 1, "verb": "subscribe"}\n')
        assert json.loads(_line(subscriber))["ok"] is True
        slow.sendall(b'{"id": 1, "verb": "pi')
        reply = json.loads(_line(slow))
        assert reply["ok"] is False and reply["code"] == 2, reply
        assert "no whole request within 10 s" in reply["error"], reply
        assert _line(slow) == b""  # and the connection is closed
        assert project.run("pause", "svc").returncode == 0
        subscriber.settimeout(30)
        seen = b""
        while b'"verb": "pause"' not in seen and b'"verb":"pause"' not in seen:
            chunk = subscriber.recv(65536)
            assert chunk, seen[-2000:]
            seen += chunk
    assert project.run("resume", "svc").returncode == 0


def _try_connect(path: str) -> socket.socket | None:
    try:
        return _connect(path, timeout_s=5)
    except BlockingIOError:
        return None


def _flood(path: str, count: int) -> list[socket.socket]:
    """`count` connections that each send the start of a request and nothing more."""
    held: list[socket.socket] = []
    for _ in range(count):
        # The listen queue may be full for a moment (EAGAIN): its turn comes.
        connected = wait_until(lambda: _try_connect(path), timeout=30, interval=0.01, what="a connection")
        assert isinstance(connected, socket.socket)
        sock = connected
        held.append(sock)
        try:
            sock.sendall(b'{"verb":')
        except OSError:
            pass  # already answered `busy` and closed
    return held


@pytest.mark.slow
def test_many_idle_connections_leave_status_answering_and_the_log_clean(project: Project, detached: int) -> None:
    """1. The supervisor's limit of open files is lowered to 256.
    2. 400 connections send `{"verb":` and nothing more.
    3. Those past the cap are answered `busy` at once; the others, once their
       time is up, an error reply: none is dropped without a word.
    4. `status` answers again (polled), and the supervisor's log holds no
       traceback and no accept error."""
    resource.prlimit(detached, resource.RLIMIT_NOFILE, (256, 256))
    log_before = len(_supervisor_log(project))
    held = _flood(_socket_path(project), 400)
    try:
        wait_until(lambda: _answers(project), timeout=90, interval=0.5, what="status to answer again")
        replies = []
        for sock in held:
            sock.settimeout(30)
            line = _line(sock)
            replies.append(json.loads(line)["error"] if line else "")
        busy = [error for error in replies if error.startswith("busy:")]
        timed_out = [error for error in replies if "no whole request within 10 s" in error]
        assert len(held) == 400 and busy and timed_out and len(busy) + len(timed_out) == 400, sorted(set(replies))
        assert "128 control connections" in busy[0], busy[0]
    finally:
        for sock in held:
            sock.close()
    log = _supervisor_log(project)
    assert "Traceback" not in log and "Too many open files" not in log, log[-3000:]
    assert len(log) - log_before < 10_000, log[log_before:][-3000:]
    assert _answers(project)


def test_status_gets_a_busy_reply_while_the_cap_is_held(project: Project, detached: int) -> None:
    """1. 128 clients (the cap) subscribe: connections held open legitimately.
    2. `status` is refused at once in one line, naming the cap, exit 1.
    3. When they hang up, `status` answers."""
    held = []
    try:
        for _ in range(128):
            held.append(_connect(_socket_path(project)))
            held[-1].sendall(b'{"id": 1, "verb": "subscribe"}\n')
            assert json.loads(_line(held[-1]))["ok"] is True
        busy = project.run("status")
        assert busy.returncode == 1, busy
        assert busy.stderr.startswith("procctl: busy: 128 control connections are open") and len(busy.stderr.splitlines()) == 1, busy.stderr
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _answers(project), timeout=30, what="status to answer again")


def _open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_out_of_open_files_a_client_gets_busy_and_the_log_one_line(project: Project, detached: int) -> None:
    """1. The supervisor's limit of open files is lowered to what it holds:
       every accept would fail (EMFILE).
    2. A `status` gets a `busy` reply in one line (the supervisor keeps a
       spare descriptor to accept and answer it), five times over.
    3. The log says so in one warning, with no traceback; with the limit
       raised again, `status` answers."""
    soft, hard = resource.prlimit(detached, resource.RLIMIT_NOFILE)
    resource.prlimit(detached, resource.RLIMIT_NOFILE, (_open_descriptors(detached), hard))
    try:
        for _ in range(5):
            busy = project.run("status")
            assert busy.returncode == 1, busy
            assert busy.stderr.startswith("procctl: busy: the supervisor has too few open files left"), busy.stderr
    finally:
        resource.prlimit(detached, resource.RLIMIT_NOFILE, (soft, hard))
    wait_until(lambda: _answers(project), timeout=30, what="status to answer again")
    log = _supervisor_log(project)
    assert "Traceback" not in log and log.count("connections are answered busy") == 1, log[-3000:]
