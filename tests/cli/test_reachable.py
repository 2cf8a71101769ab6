"""A running supervisor stays reachable and up: a deleted manifest, a removed
socket or a socket someone else took does not make `status` and `down` lose
it; a detached supervisor with nothing left running stays up until `down`;
`send` to a process that never reads is bounded and says so; every error
reply carries its request's id."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import Project, alive, wait_until

SERVICE = '[process.svc]\ncmd = "sleep 600"\n'


def _status(project: Project, *args: str) -> dict[str, Any]:
    done = project.run("status", "--json", *args)
    assert done.returncode == 0, done
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def detached(project: Project) -> Iterator[int]:
    """`up -d` of one service; its supervisor's pid. Stopped (by pid) at the end."""
    project.write(SERVICE)
    assert project.run("up", "-d").returncode == 0
    pid = _status(project)["pid"]
    try:
        yield pid
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive(pid), what="the supervisor to stop")


def test_status_and_down_reach_a_supervisor_whose_manifest_was_deleted(project: Project, detached: int) -> None:
    """1. `up -d`. 2. The manifest is deleted. 3. `status` (both paths) and
    `down` still reach the supervisor, from the manifest's directory, and by
    `-f` naming the deleted file."""
    project.manifest.unlink()
    assert _status(project)["pid"] == detached
    assert _status(project, "-f", "procfile.toml")["pid"] == detached
    table = project.run("status")
    assert table.returncode == 0 and "svc" in table.stdout
    down = project.run("down")
    assert down.returncode == 0, down
    assert f"supervisor {detached} stopped" in down.stdout
    assert not alive(detached)
    gone = project.run("status")
    assert gone.returncode == 2 and "no manifest here" in gone.stderr


def test_a_removed_socket_is_laid_down_again(project: Project, detached: int) -> None:
    """1. `up -d`. 2. The socket file is removed. 3. `status` answers (the
    supervisor binds it again within a second); `up -d` still refuses a
    second supervisor; `down` stops the one that runs."""
    (project.root / ".procctl" / "procctl.sock").unlink()
    assert _status(project)["pid"] == detached
    second = project.run("up", "-d")
    assert second.returncode == 0 and f"pid {detached}" in second.stdout  # already up: no second one
    assert project.run("down").returncode == 0
    assert not alive(detached)


@pytest.mark.slow
def test_down_stops_by_the_proven_pid_when_the_socket_is_taken(project: Project, detached: int) -> None:
    """1. `up -d`. 2. The socket is replaced by a stranger's listener that
    hangs up on everyone. 3. `status` exits 3 naming the supervisor's pid;
    `down` stops it gracefully by that pid (the lock proves it), and the
    service got its stop signal."""
    path = project.root / ".procctl" / "procctl.sock"
    path.unlink()
    stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stranger.bind(str(path))
    stranger.listen()
    stop = threading.Event()

    def hang_up() -> None:
        stranger.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = stranger.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        status = project.run("status", "--json")
        assert status.returncode == 3, status
        assert f"runs (pid {detached}) but does not answer" in status.stderr and "'procctl down' stops it by its pid" in status.stderr
        down = project.run("down")
        assert down.returncode == 0, down
        assert f"supervisor {detached} stopped (reached by its pid: its control socket was gone)" in down.stdout
    finally:
        stop.set()
        thread.join()
        stranger.close()
    assert not alive(detached)
    log = (project.root / ".procctl" / "supervisor.log").read_text()
    assert "stopping: terminated (SIGTERM)" in log and "1 stopped" in log  # a graceful stop, with its summary


def test_a_pid_in_the_lock_is_trusted_only_when_it_holds_the_lock(project: Project) -> None:
    """A lock file naming a process that does not hold it (a stale file,
    a planted pid) proves nothing: status says no supervisor, down stops nothing."""
    project.write(SERVICE)
    state = project.root / ".procctl"
    state.mkdir(mode=0o700)
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        (state / "supervisor.lock").write_text(f"{bystander.pid}\n")
        os.chmod(state / "supervisor.lock", 0o600)
        assert project.run("status").returncode == 3
        assert project.run("down").returncode == 0  # "already down": the planted pid is not signalled
        assert alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_a_detached_supervisor_stays_up_with_nothing_running(project: Project, detached: int) -> None:
    """1. `up -d`. 2. `kill` of the last instance: the supervisor stays up,
    `status` shows it stopped, `start` runs it again. 3. `scale svc=0`: still
    up. 4. `down` ends it."""
    assert project.run("kill", "svc").returncode == 0
    wait_until(lambda: _status(project)["instances"][0]["state"] == "stopped", what="svc to stop")
    assert alive(detached)
    assert project.run("start", "svc").returncode == 0
    wait_until(lambda: _status(project)["instances"][0]["state"] == "running", what="svc to run again")
    assert project.run("scale", "svc=0").returncode == 0
    wait_until(lambda: all(row["state"] == "stopped" for row in _status(project)["instances"]), what="svc to stop")
    assert project.run("scale", "svc=2").returncode == 0
    wait_until(lambda: sum(row["state"] == "running" for row in _status(project)["instances"]) == 2, what="two replicas")
    assert project.run("down").returncode == 0
    assert not alive(detached)


@pytest.mark.parametrize("ending", ["fail_fast", "exit_on_end"])
def test_a_failure_that_stops_everything_leaves_a_detached_supervisor_up(project: Project, ending: str) -> None:
    """1. `up -d` of a service and a job that fails (under fail_fast, the
    default) or ends (exit_on_end). 2. Everything is stopped, and the
    supervisor stays up: `status` says what stopped it and shows the job's
    exit; `restart` is refused in one line saying what to do. 3. `down`
    ends it. (It used to exit, so `status` found no supervisor and `down`
    said it was already down.)"""
    setting = "exit_on_end = true" if ending == "exit_on_end" else ""
    project.write(f'[settings]\n{setting}\n{SERVICE}[process.job]\ncmd = "sleep 1; exit 3"\npool = true\n')
    assert project.run("up", "-d").returncode == 0
    pid = _status(project)["pid"]
    try:
        wait_until(lambda: _status(project)["halted"] is not None, timeout=30, what="the failure to stop everything")
        status = _status(project)
        assert status["halted"] == f"job failed 3 ({ending})" and not status["stopping"], status
        wait_until(lambda: all(row["state"] != "running" for row in _status(project)["instances"]), what="svc to stop")
        states = {row["name"]: (row["state"], row["exit_code"]) for row in _status(project)["instances"]}
        assert states["job"] == ("failed", 3) and states["svc"][0] == "stopped", states
        assert alive(pid)
        refused = project.run("restart", "svc")
        assert refused.returncode == 2 and refused.stderr == f"procctl: everything was stopped after job failed 3 ({ending}): 'procctl down', then 'procctl up -d' again\n", refused
        shown = project.run("status", env={"COLUMNS": "200"})
        assert f"everything stopped after job failed 3 ({ending}): 'procctl down' ends it" in " ".join(shown.stdout.split()), shown.stdout
        down = project.run("down")
        assert down.returncode == 0 and "stopped" in down.stdout + down.stderr, down
        wait_until(lambda: not alive(pid), what="the supervisor to end")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not alive(pid), what="the supervisor to stop")


def test_a_foreground_run_still_ends_when_nothing_is_left(project: Project) -> None:
    project.write(SERVICE)
    proc = project.start("run", "--plain")
    wait_until(lambda: project.run("status").returncode == 0, what="the supervisor")
    assert project.run("kill", "svc").returncode == 0
    assert proc.wait(timeout=30) == 0


def test_send_to_a_process_that_never_reads_is_bounded_and_says_so(project: Project, detached: int) -> None:
    """svc never reads its stdin. Sends of 16 KiB fill its pipe, then the
    1 MiB the supervisor keeps for it; from then on `send` says it was not
    sent, and the supervisor's memory stayed bounded."""
    before = psutil.Process(detached).memory_info().rss
    text = "x" * 16000
    # 89 sends on one connection of the control protocol (one `procctl send`
    # each would spend the time in 89 start-ups), then the command line's own.
    request = json.dumps({"verb": "send", "args": {"names": ["svc"], "text": text}}) + "\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(project.root / ".procctl" / "procctl.sock"))
        sock.sendall(request.encode() * 89)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    replies = [json.loads(line) for line in data.splitlines()]
    assert len(replies) == 89 and all(reply["ok"] for reply in replies), replies[-1]
    results = [reply["result"] for reply in replies]
    last = project.run("send", "svc", text, "--json")  # 1.4 MB in all: past the pipe and the bound
    assert last.returncode == 1 and json.loads(last.stdout).get("not_read") == ["svc"], last
    sent = [r for r in results if r["sent"] == ["svc"]]
    refused = [r for r in results if r.get("not_read") == ["svc"] and r["sent"] == []]
    assert 60 <= len(sent) <= 75 and len(refused) == 89 - len(sent), results[-1]
    assert all(r["sent"] == ["svc"] for r in results[: len(sent)]), "a send went through after one was refused"
    plain = project.run("send", "svc", text)
    assert plain.returncode == 1 and "not sent, its stdin is full: svc" in plain.stdout, plain
    assert psutil.Process(detached).memory_info().rss - before < 16 << 20


def test_every_error_reply_carries_its_request_id(project: Project, detached: int) -> None:
    path = str(project.root / ".procctl" / "procctl.sock")
    lines = [
        json.dumps({"id": 11, "verb": "no-such-verb"}),
        json.dumps({"id": "abc", "verb": "kill", "args": {"names": ["no-such-process"]}}),
        json.dumps({"id": 13, "verb": "scale", "args": {"process": "svc"}}),
        json.dumps({"id": 14, "verb": "pause", "args": {"names": 7}}),
        json.dumps({"id": 15, "verb": "ping"}),
    ]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall("".join(line + "\n" for line in lines).encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    replies = [json.loads(line) for line in data.splitlines()]
    assert [reply["id"] for reply in replies] == [11, "abc", 13, 14, 15]
    assert [reply["ok"] for reply in replies] == [False, False, False, False, True]
    assert all(reply["error"] for reply in replies[:-1])
