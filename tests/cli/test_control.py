"""The control plane: a second procctl talks to a running supervisor."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PY, Project, alive, helper, marked_pids, started, wait_until


def _status(project: Project, *args: str) -> dict[str, Any] | None:
    result = project.run("status", "--json", *args)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)


def _instance(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(row for row in status["instances"] if row["name"] == name)


def _start(project: Project, *args: str) -> subprocess.Popen[bytes]:
    proc = project.start("run", *args)
    wait_until(lambda: started(_status(project)) or proc.poll() is not None, what="the supervisor to answer")
    assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _socket_path(project: Project) -> Path:
    return project.root / ".procctl" / "procctl.sock"


def test_no_supervisor_is_exit_3_and_unknown_name_is_exit_2(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 30"\n')
    result = project.run("status")
    assert result.returncode == 3
    assert result.stderr.startswith("procctl: no supervisor is running for ")
    assert "Traceback" not in result.stderr
    proc = _start(project)
    try:
        bad = project.run("pause", "nope")
        assert bad.returncode == 2
        assert bad.stderr.strip() == "procctl: unknown process or instance 'nope'; known processes: a"
    finally:
        _stop(proc)


def test_pause_stops_the_whole_tree_and_resume_continues_it(project: Project) -> None:
    """1. A tree of three (one escaped with setsid) runs.
    2. `pause tree` puts every one of them in state T; status says paused.
    3. `resume tree` takes every one out of T."""
    pids_file = project.root / "pids"
    project.write(f"""
        [process.tree]
        cmd = ["{PY}", "{helper('tree.py')}", "{pids_file}"]
    """)
    proc = _start(project)
    try:
        wait_until(pids_file.exists, what="the tree")
        pids = [int(p) for p in pids_file.read_text().split()]
        result = project.run("pause", "tree")
        assert result.returncode == 0, result.stderr
        assert "paused: tree" in result.stdout
        wait_until(lambda: all(_proc_state(pid) == "T" for pid in pids), what="every process to stop")
        status = _status(project)
        assert status is not None and _instance(status, "tree")["state"] == "paused"
        assert project.run("resume", "tree").returncode == 0
        wait_until(lambda: all(_proc_state(pid) != "T" for pid in pids), what="every process to continue")
        status = _status(project)
        assert status is not None and _instance(status, "tree")["state"] == "running"
    finally:
        assert _stop(proc) == 130


def test_pause_all_holds_the_queue(project: Project) -> None:
    marks = project.root / "marks"
    marks.mkdir()
    project.write(f"""
        [settings]
        max_parallel = 1
        [process.job]
        cmd = "touch {marks}/$PROCCTL_ITEM.started; sleep 0.4"
        each = {{ range = [1, 4] }}
    """)
    proc = _start(project)
    try:
        wait_until(lambda: (marks / "1.started").exists(), what="the first job")
        result = project.run("pause", "--all", "--json")
        assert json.loads(result.stdout)["queue_held"] is True
        time.sleep(1.5)  # longer than a job: with the queue moving, more would have started
        started = sorted(marks.iterdir())
        assert len(started) <= 2  # the one paused, and at most one that got its slot before the hold
        assert project.run("resume", "--all").returncode == 0
        wait_until(lambda: len(list(marks.iterdir())) == 4, what="the queue to move again")
        assert proc.wait(timeout=30) == 0
    finally:
        _stop(proc)


@pytest.mark.slow
def test_paused_job_does_not_time_out(project: Project) -> None:
    # The job ends only once the gate opens (after the pause has outlasted
    # its timeout), however slowly the commands below start on a busy machine.
    gate = project.root / "gate"
    project.write(f"""
        [process.job]
        cmd = "while [ ! -e {gate} ]; do sleep 0.05; done; echo finished"
        timeout = "4s"
    """)
    proc = _start(project)
    try:
        wait_until(lambda: (status := _status(project)) is not None and _instance(status, "job")["state"] == "running", what="the job to run")
        paused = project.run("pause", "job", "--json")
        assert paused.returncode == 0 and json.loads(paused.stdout)["paused"] == ["job"], paused.stdout + paused.stderr
        time.sleep(4.5)  # past the timeout, but paused all along
        gate.touch()
        assert project.run("resume", "job").returncode == 0
        assert proc.wait(timeout=30) == 0
        assert "finished" in proc.out_path.read_text()  # type: ignore[attr-defined]
    finally:
        _stop(proc)


def test_kill_does_not_restart_an_always_process(project: Project) -> None:
    project.write("""
        [process.svc]
        cmd = "sleep 60"
        restart = "always"
        backoff = "100ms"
        [process.other]
        cmd = "sleep 60"
    """)
    proc = _start(project)
    try:
        status = _status(project)
        assert status is not None
        pid = _instance(status, "svc")["pid"]
        result = project.run("kill", "svc")
        assert result.returncode == 0 and "stopping: svc" in result.stdout
        wait_until(lambda: not alive(pid), what="svc to stop")
        time.sleep(0.5)  # longer than the backoff: a restart would have happened
        status = _status(project)
        assert status is not None
        assert _instance(status, "svc")["state"] == "stopped"
        assert _instance(status, "svc")["pid"] is None
    finally:
        _stop(proc)


def test_kill_with_signal_delivers_just_that(project: Project) -> None:
    project.write("""
        [process.svc]
        cmd = "trap 'echo got HUP' HUP; echo trapping; while :; do sleep 0.05; done"
    """)
    proc = _start(project)
    try:
        # Its trap is set once it says so (a HUP before would end the shell).
        wait_until(lambda: "trapping" in project.log("svc"), what="the trap to be set")
        result = project.run("kill", "svc", "--signal", "HUP")
        assert "sent SIGHUP to: svc" in result.stdout
        wait_until(lambda: "got HUP" in project.log("svc"), what="the trap to run")
        assert _instance(_status(project) or {}, "svc")["state"] == "running"
        assert project.run("kill", "svc", "--signal", "NOPE").returncode == 2
    finally:
        _stop(proc)


def test_restart_changes_the_pid_and_start_brings_back_a_killed_one(project: Project) -> None:
    project.write('[process.svc]\ncmd = "sleep 60"\n[process.keep]\ncmd = "sleep 60"\n')
    proc = _start(project)
    try:
        first = _instance(_status(project) or {}, "svc")["pid"]
        assert project.run("restart", "svc").returncode == 0
        second = wait_until(lambda: (_instance(_status(project) or {}, "svc")["pid"] or 0) not in (0, first), what="a new pid")
        assert second and not alive(first)
        assert project.run("kill", "svc").returncode == 0
        wait_until(lambda: _instance(_status(project) or {}, "svc")["state"] == "stopped")
        assert project.run("start", "svc").returncode == 0
        wait_until(lambda: _instance(_status(project) or {}, "svc")["state"] == "running", what="svc to start again")
    finally:
        _stop(proc)


def test_scale_up_and_down(project: Project) -> None:
    project.write("""
        [settings]
        max_parallel = 4
        [process.web]
        cmd = "echo port=$PORT; sleep 60"
        port = 7300
    """)
    proc = _start(project)
    try:
        result = project.run("scale", "web=3")
        assert result.returncode == 0, result.stderr
        wait_until(lambda: [r["state"] for r in (_status(project) or {"instances": []})["instances"]].count("running") == 3, what="three replicas")
        wait_until(lambda: (project.logs / "web.3.log").exists() and "port=7302" in (project.logs / "web.3.log").read_text())
        assert project.run("scale", "web=1").returncode == 0
        wait_until(lambda: [r["state"] for r in (_status(project) or {"instances": []})["instances"]].count("running") == 1, what="one replica")
        assert project.run("scale", "web").returncode == 2
        assert project.run("scale", "nope=2").returncode == 2
    finally:
        _stop(proc)


def test_send_reaches_stdin(project: Project) -> None:
    project.write(f"""
        [process.echo]
        cmd = ["{PY}", "-c", "import sys\\nfor line in sys.stdin: print('got', line.strip(), flush=True)"]
    """)
    proc = _start(project)
    try:
        result = project.run("send", "echo", "hello", "there")
        assert result.returncode == 0 and "sent to: echo" in result.stdout
        wait_until(lambda: "got hello there" in project.log("echo"), what="the line to arrive")
        assert project.run("send", "--all", "again").returncode == 0
        wait_until(lambda: "got again" in project.log("echo"))
    finally:
        _stop(proc)


def test_logs_tail_and_follow(project: Project) -> None:
    project.write("""
        [process.talk]
        cmd = "for i in 1 2 3; do echo line $i; done; while :; do sleep 0.05; [ -e go ] && echo late && rm go; done"
    """)
    proc = _start(project)
    try:
        wait_until(lambda: (project.logs / "talk.log").exists() and "line 3" in (project.logs / "talk.log").read_text())
        tail = project.run("logs", "talk", "-n", "2")
        assert tail.stdout == "line 2\nline 3\n"
        # The event log is written in batches (up to 0.2 s late): a follower
        # begun before `started` is in it would print it as news, after the tail.
        wait_until(lambda: '"event": "started"' in (project.logs / "events.jsonl").read_text(), what="the start in the event log")
        follower = project.start("logs", "talk", "-F", "-n", "1")
        # Once the tail is out, the follower knows where the file ends: what comes later is new.
        wait_until(lambda: follower.out_path.read_text() == "line 3\n", what="logs -f to print the tail")  # type: ignore[attr-defined]
        (project.root / "go").touch()
        wait_until(lambda: follower.out_path.read_text() == "line 3\nlate\n", what="logs -f to show the new line")  # type: ignore[attr-defined]
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
        assert project.run("logs", "nope").returncode == 2
    finally:
        _stop(proc)


def test_socket_is_private_and_survives_bad_requests_and_a_flood(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 60"\n')
    proc = _start(project)
    try:
        path = _socket_path(project)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

        def raw(payload: bytes) -> dict[str, Any]:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(payload)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                return json.loads(data)

        assert raw(b"not json\n")["ok"] is False
        assert "unknown verb" in raw(b'{"verb": "explode"}\n')["error"]
        assert raw(b'{"verb": "pause", "args": {"names": [1]}}\n')["ok"] is False
        assert "too large" in raw(b"x" * (200 * 1024) + b"\n")["error"]
        answers: list[bool] = []

        def client() -> None:
            answers.append(raw(b'{"verb": "status"}\n')["ok"])

        threads = [threading.Thread(target=client) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers == [True] * 50
        assert _status(project) is not None
    finally:
        _stop(proc)


def test_second_supervisor_is_refused_and_a_stale_socket_replaced(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 60"\n')
    proc = _start(project)
    try:
        second = project.run("run")
        assert second.returncode == 2
        assert "a supervisor is already running" in second.stderr
    finally:
        _stop(proc)
    # A supervisor killed with SIGKILL leaves its socket behind.
    proc = _start(project)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _socket_path(project).exists()
    proc = _start(project)
    _stop(proc)


def test_long_manifest_path_uses_a_short_socket(project: Project) -> None:
    deep = project.root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "procfile.toml").write_text('[process.a]\ncmd = "sleep 60"\n')
    manifest = str(deep / "procfile.toml")
    proc = project.start("run", "-f", manifest)
    try:
        wait_until(lambda: project.run("status", "--json", "-f", manifest).returncode == 0, what="the supervisor")
        assert not (deep / ".procctl" / "procctl.sock").exists()
    finally:
        _stop(proc)


def test_up_detached_then_down_leaves_nothing(project: Project) -> None:
    project.write(f"""
        [process.db]
        cmd = ["{PY}", "-c", "import time; print('db ready', flush=True); time.sleep(120)"]
        ready = {{ log = "db ready" }}
        [process.web]
        cmd = "sleep 120"
        depends_on = {{ db = "ready" }}
    """)
    up = project.run("up", "-d", "--wait")
    assert up.returncode == 0, up.stderr
    status = _status(project)
    assert status is not None
    assert {r["name"]: r["state"] for r in status["instances"]} == {"db": "ready", "web": "running"}
    supervisor = status["pid"]
    assert (project.root / ".procctl" / "supervisor.pid").read_text().strip() == str(supervisor)
    down = project.run("down")
    assert down.returncode == 0, down.stderr
    assert not alive(supervisor)
    wait_until(lambda: not marked_pids(project.marker), what="every process to be gone")
    # Down already: as docker compose, `down` says so and exits 0; a
    # control command that needs a supervisor still exits 3.
    again = project.run("down")
    assert again.returncode == 0 and again.stdout.startswith("already down: no supervisor runs for "), again
    assert project.run("pause", "web").returncode == 3


def test_up_starts_every_service_and_returns_when_jobs_wait_behind_a_full_pool(project: Project) -> None:
    """1. Three services and a pool of two: all three start (the pool bounds
       jobs only).
    2. Two jobs in the pool that wait on a third: `up -d` says they are
       queued and returns instead of waiting out its timeout."""
    project.write("""
        [settings]
        max_parallel = 2
        [process.svc]
        cmd = "sleep 120"
        replicas = 3
        [process.job]
        cmd = "sleep 120"
        each = [1, 2, 3]
    """)
    up = project.run("up", "-d", "--wait-timeout", "30s", timeout=60)
    try:
        assert up.returncode == 0, up.stderr
        assert "5 instances started" in up.stdout
        assert "queued for the pool of 2: job[3]" in up.stdout
        status = _status(project)
        assert status is not None
        assert {r["name"]: r["state"] for r in status["instances"]} == {
            "svc.1": "running", "svc.2": "running", "svc.3": "running", "job[1]": "running", "job[2]": "running", "job[3]": "pending",
        }  # fmt: skip
    finally:
        assert project.run("down").returncode == 0
    wait_until(lambda: not marked_pids(project.marker), what="every process to be gone")


@pytest.mark.parametrize("verb", ["pause", "resume", "kill", "restart", "start", "send"])
def test_control_verbs_need_names(project: Project, verb: str) -> None:
    project.write('[process.a]\ncmd = "sleep 60"\n')
    result = project.run(verb)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_status_reports_the_sampled_tree_figures(project: Project) -> None:
    project.write(f"""
        [settings]
        metrics_interval = "100ms"
        [process.hold]
        cmd = "{PY} {helper('grow.py')} 64 64 0; true"
    """)
    proc = _start(project)
    try:
        def holding() -> dict[str, Any] | None:
            status = _status(project)
            row = status["instances"][0] if status else None
            return row if row and (row["rss_bytes"] or 0) >= 64 << 20 else None

        row = wait_until(holding, what="status to show the 64 MiB of the grandchild")
        assert row["peak_rss_bytes"] >= row["rss_bytes"]  # type: ignore[index]
        assert row["cpu_percent"] is not None and row["cpu_time_s"] is not None  # type: ignore[index]
    finally:
        assert _stop(proc) == 130


def _imported(project: Project, *args: str) -> tuple[int, str, set[str]]:
    """(exit code, stdout, the modules it imported and their top-level packages) of `procctl ARGS`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "procctl", *args],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return done.returncode, done.stdout, names | {name.split(".")[0] for name in names}


def test_status_json_answers_without_loading_the_app(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 30"\n')
    code, _, modules = _imported(project, "status", "--json")
    assert code == 3 and "typer" not in modules
    proc = _start(project)
    try:
        code, out, modules = _imported(project, "status", "--json", "-f", str(project.manifest))
        assert code == 0 and [row["name"] for row in json.loads(out)["instances"]] == ["a"]
        # Nor the manifest's model, nor dataclasses (and inspect with it): a tenth of this path's start-up.
        assert not {"typer", "rich", "asyncio", "psutil", "dataclasses", "inspect"} & modules, modules
        assert "procctl.config.manifest" not in modules
        # A form the fast path does not take goes to the app, with the same reply.
        code, table, modules = _imported(project, "status")
        assert code == 0 and "typer" in modules and " a " in table
    finally:
        assert _stop(proc) == 130


def test_version_answers_without_loading_the_app(project: Project) -> None:
    code, out, modules = _imported(project, "--version")
    from procctl import __version__

    assert code == 0 and out == f"procctl {__version__}\n"
    assert not {"typer", "rich", "asyncio", "psutil"} & modules, modules
    # With anything else on the line, the app answers it, with the same text.
    app = subprocess.run([sys.executable, "-m", "procctl", "--version", "status"], cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=60)
    assert app.stdout == out
