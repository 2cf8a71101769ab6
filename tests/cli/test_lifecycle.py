"""An instance's state has one writer: what `status`, `--events` and the live
view say agree, and a control verb cannot undo what is under way."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import PY, Project, helper, started, wait_until


def _status(project: Project) -> dict[str, Any] | None:
    result = project.run("status", "--json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def _state(project: Project, name: str) -> str | None:
    status = _status(project)
    if status is None:
        return None
    return next(row["state"] for row in status["instances"] if row["name"] == name)


def _start(project: Project, *args: str) -> subprocess.Popen[bytes]:
    proc = project.start("run", *args)
    wait_until(lambda: started(_status(project)) or proc.poll() is not None, what="the supervisor to answer")
    assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
    return proc


def _force_stop(proc: subprocess.Popen[bytes]) -> None:
    # The second SIGINT forces: SIGKILL to everything still stopping.
    for _ in range(2):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    proc.wait(timeout=30)


@pytest.mark.slow
def test_pause_and_resume_cannot_undo_a_stop_in_flight(project: Project) -> None:
    """1. svc ignores SIGTERM and may take a minute to stop: `kill svc` leaves it stopping.
    2. `pause svc` finds nothing to pause: a stopping instance is not paused.
    3. `resume svc` does not make it running: status still says stopping."""
    pid_file = project.root / "svc.pid"
    project.write(f"""
        [process.svc]
        cmd = ["{PY}", "{helper('ignore_term.py')}", "{pid_file}"]
        stop_timeout = "60s"
        [process.other]
        cmd = "sleep 60"
    """)
    proc = _start(project)
    try:
        wait_until(pid_file.exists, what="svc to start")
        killed = project.run("kill", "svc")
        assert killed.returncode == 0 and "stopping: svc" in killed.stdout, killed.stderr
        wait_until(lambda: _state(project, "svc") == "stopping", what="svc to be stopping")
        paused = project.run("pause", "svc")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == "paused: nothing"
        assert _state(project, "svc") == "stopping"
        resumed = project.run("resume", "svc")
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == "resumed: nothing"
        assert _state(project, "svc") == "stopping"
    finally:
        _force_stop(proc)


def test_start_of_an_ended_instance_is_a_state_event(project: Project) -> None:
    """1. job ends at once; keep holds the supervisor open.
    2. `pause --all` holds the queue, so a restarted job has to wait in it.
    3. `start job`: status says pending, and so does the event stream's last
       state record for job (it said exited before)."""
    events_file = project.root / "run.jsonl"
    project.write("""
        [process.job]
        cmd = "true"
        [process.keep]
        cmd = "sleep 60"
    """)
    proc = _start(project, "--events", str(events_file))

    def job_states() -> list[str]:
        records = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
        return [r["state"] for r in records if r["event"] == "state" and r["instance"] == "job"]

    try:
        wait_until(lambda: _state(project, "job") == "exited", what="job to end")
        assert job_states()[-1] == "exited"
        assert project.run("pause", "--all").returncode == 0
        started = project.run("start", "job")
        assert started.returncode == 0 and "starting: job" in started.stdout, started.stderr
        assert _state(project, "job") == "pending"
        wait_until(lambda: job_states()[-1] == "pending", timeout=10, what="the event stream to say pending")
        assert project.run("resume", "--all").returncode == 0
        wait_until(lambda: job_states()[-4:] == ["pending", "starting", "running", "exited"], what="job to run again")
    finally:
        _force_stop(proc)


def test_a_run_stopped_on_request_is_stopped_in_the_events_the_history_and_the_summary(project: Project) -> None:
    """1. `restart svc` ends its first run, `kill svc` its second; nothing
       else runs, so the supervisor then ends.
    2. The `exited` events, the run history and the summary all say each
       run was stopped (how a run ended is decided in one place)."""
    events_file = project.root / "run.jsonl"
    project.write("""
        [process.svc]
        cmd = "sleep 60"
    """)
    proc = _start(project, "--events", str(events_file), "--json")
    first = wait_until(lambda: (_status(project) or {"instances": [{"pid": None}]})["instances"][0]["pid"], what="svc to run")
    assert project.run("restart", "svc").returncode == 0
    wait_until(lambda: (_status(project) or {"instances": [{"pid": first}]})["instances"][0]["pid"] not in (None, first), what="the second run")
    assert project.run("kill", "svc").returncode == 0
    assert proc.wait(timeout=30) == 0
    records = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert [r["status"] for r in records if r["event"] == "exited"] == ["stopped", "stopped"]
    history = json.loads(project.run("history", "--json").stdout)["runs"]
    assert [row["state"] for row in history] == ["stopped", "stopped"]
    out = Path(proc.out_path).read_text()  # type: ignore[attr-defined]
    summary = json.loads(out)  # only the summary: the prefixed lines went to stderr
    assert [(inst["name"], inst["state"]) for inst in summary["instances"]] == [("svc", "stopped")]
