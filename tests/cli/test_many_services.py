"""Hundreds of services under one supervisor: their starts run apart from
its crowded table of descriptors (engine/spawner.py), and each still gets
its stdin, its log, its restart and its stop. More than the limit of open
files allows: the starts that find no descriptor fail in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize(("services", "limit"), [(40, 120), (300, 600)], ids=["shared-table", "apart"])
def test_running_out_of_descriptors_fails_the_starts_that_find_none_in_one_line(project: Project, services: int, limit: int) -> None:
    """More services than the limit of open files allows (the limit set
    low, soft and hard): those whose start finds no descriptor fail with one
    line naming the limit, the run stops (fail_fast) with exit 1, and
    nothing is a traceback. 40 services start on the shared workers; 300
    start apart, where the descriptors handed back find no room."""
    project.write(f"""
        [process.s]
        cmd = "sleep 300"
        replicas = {services}
    """)
    done = subprocess.run(
        ["sh", "-c", f'ulimit -Sn {limit} && ulimit -Hn {limit} && exec "$@"', "sh", sys.executable, "-m", "procctl", "run", "--plain"],
        cwd=project.root, env=project.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"procctl ran out of open files (Too many open files; its limit is {limit}: see ulimit -n)" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "(fail_fast)" in done.stdout
