"""Readiness that cannot lie, and liveness: a tcp probe passes only for a
listener of the instance's own tree, a port someone else holds is told at
once (naming the holder), and a service that stops answering is restarted,
saying why."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
from conftest import PY, Project, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def stranger() -> Iterator[socket.socket]:
    """A listener of the test's own process: not of any instance's tree."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _states(project: Project) -> dict[str, str]:
    status = project.status()
    return {row["name"]: row["state"] for row in status["instances"]} if status else {}  # type: ignore[index]


def test_a_port_held_before_the_start_is_told_and_the_dependent_never_starts(project: Project, stranger: socket.socket) -> None:
    """1. Another process (this test) listens on 127.0.0.1:PORT.
    2. redis has a tcp probe on that port; web depends on redis being ready.
    3. redis fails at once, the message naming the holder's pid and name;
       web is skipped and never runs; procctl exits 1."""
    port = stranger.getsockname()[1]
    project.write(f"""
        [process.redis]
        cmd = "echo redis ran; sleep 300"
        ready = {{ tcp = "127.0.0.1:{port}", timeout = "60s" }}
        [process.web]
        cmd = "echo web ran"
        depends_on = {{ redis = "ready" }}
    """)
    result = project.run("run", "--plain", "--json")
    assert result.returncode == 1, result.stderr
    # With --json the lines are on stderr and the summary alone on stdout.
    assert f"redis: port 127.0.0.1:{port} is already held by pid {os.getpid()} (" in result.stderr
    assert "redis is ready" not in result.stderr and "web ran" not in result.stderr and "redis ran" not in result.stderr
    summary = {row["name"]: row for row in json.loads(result.stdout)["instances"]}
    assert summary["redis"]["state"] == "failed" and f"pid {os.getpid()}" in summary["redis"]["reason"]
    assert summary["web"]["state"] == "skipped"


def test_a_tcp_probe_does_not_pass_on_a_listener_outside_the_tree(project: Project) -> None:
    """1. redis starts (it never listens); its tcp probe keeps trying.
    2. Once it runs, another process (this test) takes the port.
    3. The probe connects, but the listener is not redis's: redis is not
       ready, fails naming the holder, and web never starts."""
    # The port is bound from the start and listened on later: bound, it
    # answers no probe and no one else (another connection's source port)
    # can take it meanwhile.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    project.write(f"""
        [process.redis]
        cmd = "sleep 300"
        ready = {{ tcp = "127.0.0.1:{port}", timeout = "120s", interval = "50ms" }}
        [process.web]
        cmd = "echo web ran"
        depends_on = {{ redis = "ready" }}
    """)
    proc = project.start("run", "--plain")
    try:
        wait_until(lambda: _states(project).get("redis") == "running", timeout=30, what="redis to run")
        sock.listen()
        assert proc.wait(timeout=60) == 1
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert f"127.0.0.1:{port} answers, but is held by pid {os.getpid()} (" in out
    assert "redis is ready" not in out and "web ran" not in out


def test_a_listener_of_the_instance_s_own_tree_passes_through_a_shell(project: Project) -> None:
    """The listener is a grandchild (`sh -c` runs python, which listens):
    still the instance's tree, so the probe passes."""
    port = _free_port()
    listen = f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(300)"
    project.write(f"""
        [process.redis]
        cmd = "true; '{PY}' -c \\"{listen}\\""
        ready = {{ tcp = "127.0.0.1:{port}", timeout = "60s", interval = "50ms" }}
        [process.web]
        cmd = "echo web ran"
        depends_on = {{ redis = "ready" }}
    """)
    proc = project.start("run", "--plain")
    try:
        wait_until(lambda: "web ran" in proc.out_path.read_text(), timeout=60, what="web to start")  # type: ignore[attr-defined]
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    assert "redis is ready (tcp)" in proc.out_path.read_text()  # type: ignore[attr-defined]


def test_a_liveness_failure_restarts_the_service_saying_why(project: Project) -> None:
    """1. A service with an exec liveness probe (`test ! -e hang`) and
       restart = "always" runs.
    2. The test makes the probe fail (creates `hang`).
    3. procctl stops it as hung and starts it again; the restart names the
       liveness probe."""
    project.write(f"""
        [process.api]
        cmd = ["{PY}", "-c", "import os, time; print('up', os.getpid(), flush=True); time.sleep(300)"]
        liveness = {{ exec = "test ! -e hang", interval = "50ms", timeout = "10s", failures = 2 }}
        restart = "always"
    """)
    proc = project.start("run", "--plain", "--events", "events.jsonl")
    try:
        wait_until(lambda: _states(project).get("api") == "running", timeout=30, what="api to run")
        (project.root / "hang").touch()
        wait_until(lambda: project.log("api").count("up ") >= 2, timeout=60, what="api to be started again")
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "api: liveness probe (exec test ! -e hang) failed 2 times in a row" in out
    check = json.loads(project.run("check", "--json").stdout)
    assert check["processes"][0]["liveness"] == {"kind": "exec", "target": "test ! -e hang", "interval_s": 0.05, "timeout_s": 10.0, "failures": 2}
    restarts = [json.loads(line) for line in (project.root / "events.jsonl").read_text().splitlines() if '"restarting"' in line]
    assert restarts and "liveness probe (exec test ! -e hang) failed 2 times in a row" in restarts[0]["reason"]


def test_liveness_is_checked_in_the_manifest(project: Project) -> None:
    project.write("""
        [process.api]
        cmd = "sleep 1"
        liveness = { tcp = "localhost", failures = 0 }
    """)
    result = project.run("check")
    assert result.returncode == 2
    assert result.stderr.startswith("procctl: ") and "liveness" in result.stderr and len(result.stderr.splitlines()) == 1


def test_the_owner_of_a_listener_is_told_by_its_tree(stranger: socket.socket) -> None:
    """ports.strangers: a listener of a child of `root` is ours; the same
    port seen from another root is a stranger's, named by pid."""
    from procctl.engine import ports

    port = stranger.getsockname()[1]
    assert ports.strangers("127.0.0.1", port, (os.getpid(),)) == (True, [])
    child = subprocess.Popen([PY, "-c", "import time; time.sleep(300)"])
    try:
        ours, others = ports.strangers("127.0.0.1", port, (child.pid,))
        assert not ours and [holder.pid for holder in others] == [os.getpid()]
        assert ports.strangers("127.0.0.1", _free_port(), (child.pid,)) == (False, [])
    finally:
        child.kill()
        child.wait()


def _connected_to_itself() -> socket.socket:
    """A TCP connection whose source is its destination: what a connect to
    a port of this machine where nothing listens sometimes becomes when the
    kernel picks that very port as the source (here made on purpose)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.connect(sock.getsockname())
    return sock


def test_a_connection_to_itself_is_no_listener(stranger: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tcp probe of a port where nothing listens can connect to itself
    (one in a few thousand tries, when the port is in the ephemeral range):
    that is no listener, and neither a tcp nor an http probe passes on it;
    one that reaches a real listener still does."""
    import asyncio

    from procctl.engine import probes

    itself = _connected_to_itself()
    assert itself.getsockname() == itself.getpeername()
    itself.close()

    real_open = asyncio.open_connection

    async def connect_from_the_port_itself(host: str, port: int, **kwargs: object) -> object:
        # The kernel's choice of source port forced to the destination's:
        # the self-connection a probe meets by chance, every time.
        return await real_open(host, port, local_addr=(host, port), **kwargs)  # type: ignore[arg-type]

    port = _free_port()
    with monkeypatch.context() as patched:
        patched.setattr(probes.asyncio, "open_connection", connect_from_the_port_itself)
        assert asyncio.run(probes._tcp_once("127.0.0.1", port, 5.0)) is False
        assert asyncio.run(probes._http_once(f"http://127.0.0.1:{port}/health", 5.0)) is False
    assert asyncio.run(probes._tcp_once("127.0.0.1", stranger.getsockname()[1], 5.0)) is True
