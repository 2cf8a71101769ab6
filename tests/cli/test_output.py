"""A child's output reaches every sink whole, and no sink can hold up the
supervisor: with procctl's stdout stuck, the control socket still answers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading

import psutil
from conftest import PY, Project, helper, wait_until

LINES = 300_000


def _run_plain_into_a_pipe(project: Project) -> subprocess.Popen[bytes]:
    """`procctl run --plain` with its stdout a pipe the test reads (or not),
    in a session of its own that the project's cleanup kills."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "procctl", "run", "--plain"],
        cwd=project.root, env=project.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    project._started.append(proc)
    return proc


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
    proc = _run_plain_into_a_pipe(project)
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


def test_a_flooding_child_starves_neither_another_childs_output_nor_the_control_socket(project: Project) -> None:
    """1. One child writes random bytes as fast as it can; another prints a
       line every 20 ms.
    2. While the flood goes on, `status --json` answers and the ticker's new
       lines reach its log and procctl's stdout.
    3. The flood's log, rotated every 32 MiB, is byte for byte what it wrote
       (sha256)."""
    report = project.root / "flood.report"
    project.write(f"""
        [process.flood]
        cmd = ["{PY}", "{helper('flood.py')}", "{report}"]
        log_keep = 1000
        [process.ticker]
        cmd = ["{PY}", "-c", "import time\\nfor i in range(1000000): print('tick', i, flush=True); time.sleep(0.02)"]
    """)
    proc = project.start("run", "--plain")
    wait_until(lambda: project.log_size("flood") > 16 << 20, timeout=60, what="the flood to write 16 MiB")
    status = project.run("status", "--json", timeout=90)
    assert status.returncode == 0, status.stderr
    assert {row["name"]: row["state"] for row in json.loads(status.stdout)["instances"]} == {"flood": "running", "ticker": "running"}
    ticks = project.log("ticker").count("tick")
    wait_until(lambda: project.log("ticker").count("tick") >= ticks + 3, timeout=60, what="the ticker's lines during the flood")
    printed = proc.out_path.read_bytes()  # type: ignore[attr-defined]
    assert not report.exists()  # the flood was still going
    (project.root / "flood.report.stop").touch()
    wait_until(report.exists, timeout=60, what="the flood to stop")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    digest, written = report.read_text().split()
    logged = project.whole_log("flood")
    assert len(logged) == int(written) and hashlib.sha256(logged).hexdigest() == digest
    assert printed.count(b" | tick ") >= ticks + 3


def test_plain_lines_reach_a_pipe_while_the_run_goes_on_and_in_order(project: Project) -> None:
    """1. `procctl run --plain` writes to a pipe (as in CI); its child prints
       a line, then waits for a file the test makes.
    2. Before the file exists, procctl's line saying the child started and
       the child's line are on the pipe: nothing waits for the run's end.
    3. The child then prints again and exits: procctl's lines and the
       child's come in the order they happened."""
    go = project.root / "go"
    project.write(f"""
        [process.talk]
        cmd = "echo hello; while [ ! -e {go} ]; do sleep 0.02; done; echo bye"
    """)
    proc = _run_plain_into_a_pipe(project)
    assert proc.stdout is not None
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(line.decode() for line in proc.stdout))  # type: ignore[union-attr]
    reader.start()
    wait_until(lambda: any("talk started with pid" in line for line in got) and any(line.endswith("| hello\n") for line in got), what="both lines while the child runs")
    go.touch()
    assert proc.wait(timeout=60) == 0
    reader.join(60)
    proc.stdout.close()
    wanted = ("talk started with pid", "| hello\n", "| bye\n", "talk exited with code 0")
    at = [next(i for i, line in enumerate(got) if marker in line) for marker in wanted]
    assert at == sorted(at) and len(set(at)) == 4, got
