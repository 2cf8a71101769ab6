"""A child's output reaches every sink whole, and no sink can hold up the
supervisor: with procctl's stdout stuck, the control socket still answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import psutil
from conftest import PY, Project, wait_until

LINES = 300_000


def test_a_stuck_stdout_stalls_neither_the_control_socket_nor_loses_a_line(project: Project) -> None:
    """1. `procctl run --plain` writes to a pipe nobody reads while a child
       writes 300,000 lines (30 MB, a pipe holds 64 KiB).
    2. `status --json` and `pause`/`resume` still answer, and procctl's memory
       stays bounded: the child waits on its writes instead.
    3. Once the pipe is read, every line arrives, in order, and the run ends."""
    project.write(f"""
        [process.flood]
        cmd = ["{PY}", "-c", "import sys\\nfor i in range({LINES}): sys.stdout.write('%09d %s\\\\n' % (i, 'x' * 89))"]
        [process.quiet]
        cmd = "sleep 300"
    """)
    proc = subprocess.Popen(
        [sys.executable, "-m", "procctl", "run", "--plain"],
        cwd=project.root, env=project.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    project._started.append(proc)  # its cleanup kills the group
    log = project.logs / "flood.log"
    # Far more than the pipe holds has been read from the child: stdout is stuck.
    wait_until(lambda: log.exists() and log.stat().st_size > 1 << 20, what="the flood to fill stdout")
    status = project.run("status", "--json", timeout=90)
    assert status.returncode == 0, status.stderr
    assert {row["name"]: row["state"] for row in json.loads(status.stdout)["instances"]} == {"flood": "running", "quiet": "running"}
    assert project.run("pause", "quiet").stdout.strip() == "paused: quiet"
    assert project.run("resume", "quiet").stdout.strip() == "resumed: quiet"
    assert psutil.Process(proc.pid).memory_info().rss < 200 << 20
    # Read it now: every line, in order, and the run goes on to its end.
    assert proc.stdout is not None
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    wait_until(lambda: _flood_exited(project), timeout=60, what="the flood to end")
    os.killpg(proc.pid, signal.SIGINT)
    reader.join(60)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 130
    assert log.stat().st_size == LINES * 100
    lines = [line.split(b" | ", 1)[1] for line in got[0].splitlines() if b" flood " in line.split(b" | ", 1)[0] and b" | " in line]
    numbers = [int(line[:9]) for line in lines if line[:9].isdigit()]
    assert numbers == list(range(LINES))


def _flood_exited(project: Project) -> bool:
    result = project.run("status", "--json")
    if result.returncode != 0:
        return False
    return any(row["name"] == "flood" and row["state"] == "exited" for row in json.loads(result.stdout)["instances"])
