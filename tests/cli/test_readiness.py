"""Readiness, status and liveness by notification (sd_notify), through the real
binary: READY=1 gates a dependent, STATUS= shows in status and the events, a
missed watchdog restarts, a stranger's datagram is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from conftest import PY, Project, helper, interrupt, wait_until
from test_reporting import _schema, _valid

SD_NOTIFY = helper("sd_notify.py")
needs_systemd_notify = pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is not installed")


def _row(project: Project, name: str) -> dict[str, Any]:
    status = project.status()
    assert status is not None
    return next(row for row in status["instances"] if row["name"] == name)


def _records(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_systemd_notify
def test_ready_by_notification_gates_a_dependent_and_status_shows(project: Project) -> None:
    """1. `db` is ready only when it says READY=1 (it waits for a go file
       first, then runs the real systemd-notify with a status); `app` waits
       for db to be ready.
    2. Before go: db runs but is not ready, app is still pending.
    3. After go: db is ready (by notify), app ran; `status --json` shows
       db's STATUS= text; the events carry a `status_message` and a `ready`
       with probe `notify`, all valid against the documented schema."""
    events_file = project.root / "events.jsonl"
    project.write(f"""
        [process.db]
        cmd = "while [ ! -e '{project.root}/go' ]; do sleep 0.05; done; systemd-notify --ready --status='accepting connections on 5432'; exec sleep 60"
        ready = {{ notify = true, timeout = "60s" }}

        [process.app]
        cmd = "echo app started; exec sleep 60"
        depends_on = {{ db = "ready" }}
    """)
    proc = project.supervise("--plain", "-j", "4", "--events", str(events_file))
    try:
        assert _row(project, "db")["state"] == "running"
        assert _row(project, "app")["state"] == "pending"
        (project.root / "go").touch()
        wait_until(lambda: _row(project, "app")["state"] == "running", what="app to start")
        db = _row(project, "db")
        assert db["state"] == "ready"
        assert db["status_message"] == "accepting connections on 5432"
        assert "app started" in (project.logs / "app.log").read_text()
    finally:
        interrupt(proc)
    records = _records(events_file)
    assert {"event": "ready", "instance": "db", "probe": "notify"}.items() <= next(r for r in records if r["event"] == "ready").items()
    assert [r["text"] for r in records if r["event"] == "status_message"] == ["accepting connections on 5432"]
    schema = _schema()
    assert [r for r in records if not _valid(r, schema, schema["$defs"])] == []
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "db status: accepting connections on 5432" in out and "db is ready (notify)" in out


def test_a_raw_datagram_makes_it_ready_and_extend_timeout_gives_it_time(project: Project) -> None:
    """1. `slow` has a 1 s readiness timeout but first asks for 60 s more
       (EXTEND_TIMEOUT_USEC), then waits for a go file before READY=1.
    2. Two seconds into its run, past the second it was first given, it is
       still running, not failed.
    3. Told to go, it becomes ready."""
    project.write(f"""
        [process.slow]
        cmd = "'{PY}' '{SD_NOTIFY}' EXTEND_TIMEOUT_USEC=60000000 'STATUS=warming up'; while [ ! -e '{project.root}/go' ]; do sleep 0.05; done; '{PY}' '{SD_NOTIFY}' READY=1 STATUS=warm; exec sleep 60"
        ready = {{ notify = true, timeout = "1s" }}
    """)
    proc = project.supervise("--plain", "-j", "4")
    try:
        wait_until(lambda: _row(project, "slow")["status_message"] == "warming up", what="the first status")

        def past_its_first_timeout() -> bool:
            row = _row(project, "slow")
            return row["state"] != "running" or (row["uptime_s"] or 0) > 2

        wait_until(past_its_first_timeout, what="two seconds of its run")
        assert _row(project, "slow")["state"] == "running"
        (project.root / "go").touch()
        wait_until(lambda: _row(project, "slow")["state"] == "ready", what="READY=1")
        assert _row(project, "slow")["status_message"] == "warm"
    finally:
        interrupt(proc)


@pytest.mark.slow
def test_a_missed_watchdog_restarts_under_the_restart_policy_and_says_why(project: Project) -> None:
    """1. `hb` has `watchdog = "1s"` and restart on-failure; its first run
       sends nothing, its second run feeds the watchdog every 0.1 s.
    2. The first run is stopped for the missed watchdog and restarted; the
       output and the restart event say why; WATCHDOG_USEC was in its
       environment.
    3. The second run, fed 10 times per timeout, is never restarted."""
    events_file = project.root / "events.jsonl"
    project.write(f"""
        [process.hb]
        cmd = "echo usec=$WATCHDOG_USEC; if [ -e '{project.root}/first' ]; then exec '{PY}' '{SD_NOTIFY}' --repeat 0.1 WATCHDOG=1; fi; touch '{project.root}/first'; exec sleep 60"
        watchdog = "1s"
        restart = "on-failure"
        max_restarts = 3
        backoff = "100ms"
    """)
    proc = project.supervise("--plain", "-j", "4", "--events", str(events_file))
    try:
        wait_until(lambda: _row(project, "hb")["restarts"] == 1 and _row(project, "hb")["state"] == "running", timeout=30, what="the restart")
        # The fed run lives on: twenty feeds later it has not been restarted.
        pid = _row(project, "hb")["pid"]
        log = project.logs / "hb.log"
        wait_until(lambda: (project.root / "first").exists() and _row(project, "hb")["uptime_s"] > 3, timeout=30, what="three seconds of the fed run")
        row = _row(project, "hb")
        assert row["restarts"] == 1 and row["pid"] == pid and row["watchdog_s"] == 1.0
    finally:
        interrupt(proc)
    assert log.read_text().count("usec=1000000") == 2
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "hb: watchdog missed: no WATCHDOG=1 within 1s; stopping it" in out
    assert "hb restarting in 0.1s (restart 1): watchdog missed: no WATCHDOG=1 within 1s" in out
    restarts = [r for r in _records(events_file) if r["event"] == "restarting"]
    assert [r["reason"] for r in restarts] == ["watchdog missed: no WATCHDOG=1 within 1s"]


def test_a_notification_from_outside_the_tree_is_refused(project: Project) -> None:
    """1. `svc` waits for READY=1. 2. A process the test starts — not of
    svc's tree — sends READY=1 to the same socket (the address read from
    svc's environment). 3. It is refused with a notice naming its pid; svc
    stays not ready. 4. svc's own READY=1 is then accepted."""
    project.write(f"""
        [process.svc]
        cmd = "while [ ! -e '{project.root}/go' ]; do sleep 0.05; done; '{PY}' '{SD_NOTIFY}' READY=1; exec sleep 60"
        ready = {{ notify = true, timeout = "60s" }}
    """)
    proc = project.supervise("--plain", "-j", "4")
    try:
        pid = wait_until(lambda: _row(project, "svc")["pid"], what="svc's pid")
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        address = environ[b"NOTIFY_SOCKET"].decode()
        assert address.startswith("@procctl-notify-")
        stranger = subprocess.run([PY, SD_NOTIFY, "READY=1", "STATUS=fake"], env={"NOTIFY_SOCKET": address}, timeout=60)
        assert stranger.returncode == 0  # read (and refused), so its barrier was closed
        out = proc.out_path  # type: ignore[attr-defined]
        wait_until(lambda: "refused a notification from pid" in out.read_text(), what="the refusal")
        assert _row(project, "svc")["state"] == "running" and _row(project, "svc")["status_message"] == ""
        (project.root / "go").touch()
        wait_until(lambda: _row(project, "svc")["state"] == "ready", what="svc's own READY=1")
    finally:
        interrupt(proc)
    line = next(line for line in proc.out_path.read_text().splitlines() if "refused" in line)  # type: ignore[attr-defined]
    assert "which belongs to no instance" in line
