"""Hundreds of services under one supervisor: their starts run apart from
its crowded table of descriptors (engine/spawner.py), and each still gets
its stdin, its log, its restart and its stop."""

from __future__ import annotations

import json
import os

from conftest import Project, started, wait_until

SERVICES = 200
"""Four descriptors each: past `spawner.APART_FROM_FD` while they start."""


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_hundreds_of_services_take_their_stdin_restart_and_stop(project: Project) -> None:
    """1. `up -d` of 200 replicas of a shell service echoing its stdin.
    2. `send` to one: its log has the line. 3. `restart` another: it runs
       again, its log has both runs, and the supervisor holds as many
       descriptors as before. 4. `down`: every one stopped, exit 0."""
    project.write(f"""
        [process.echo]
        cmd = ["sh", "-c", "echo up; while read line; do echo \\"got $line\\"; done"]
        replicas = {SERVICES}
    """)
    up = project.run("up", "-d", timeout=120)
    assert up.returncode == 0, up
    try:
        wait_until(lambda: started(project.status()), what="every start to be made")
        status = project.status()
        assert status is not None
        assert [row["state"] for row in status["instances"]].count("running") == SERVICES, status
        pid = status["pid"]
        wait_until(lambda: all(project.log(f"echo.{n}") == "up\n" for n in (1, 150, 200)), what="the services to say they are up")

        sent = project.run("send", "echo.150", "hello")
        assert sent.returncode == 0, sent
        wait_until(lambda: project.log("echo.150") == "up\ngot hello\n", what="the line to arrive")

        held = _descriptors(pid)
        first = next(row["pid"] for row in status["instances"] if row["name"] == "echo.7")
        assert project.run("restart", "echo.7").returncode == 0

        def restarted() -> bool:
            rows = {row["name"]: row for row in (project.status() or {"instances": []})["instances"]}
            row = rows.get("echo.7")
            return row is not None and row["state"] == "running" and row["pid"] != first and project.log("echo.7") == "up\nup\n"

        wait_until(restarted, what="echo.7 to run again")
        assert _descriptors(pid) == held
    finally:
        down = project.run("down", timeout=120)
    assert down.returncode == 0, down
    rows = json.loads(project.run("history", "--json", "-n", str(SERVICES * 2)).stdout)["runs"]
    assert len(rows) == SERVICES + 1 and {row["state"] for row in rows} == {"stopped"}, {row["state"] for row in rows}
