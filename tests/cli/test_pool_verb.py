"""`procctl pool [SIZE]`: the pool shown, and resized while it runs. (Its
window of jobs in flight on a cluster: tests/cluster.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import Project, interrupt, wait_until

HOLD = Path(__file__).resolve().parents[1] / "helpers" / "hold.py"


def test_the_pool_grows_and_shrinks_while_it_runs(project: Project) -> None:
    """1. Four jobs that hold until released, -j 1: one runs.
    2. `procctl pool 3`: two more start; the reply and status say 3.
    3. `procctl pool 1` and one released: nothing new starts until fewer than one run.
    4. A size out of bounds is refused in one line; the pool is unchanged."""
    log, go = project.root / "hold.log", project.root / "go"
    project.write(f'[process.h]\ncmd = "{sys.executable} {HOLD} {log} {go}-$PROCCTL_ITEM"\neach = [1, 2, 3, 4]\n')
    proc = project.supervise("--plain", "-j", "1")
    try:
        wait_until(lambda: log.exists() and log.read_text().count("start") == 1, what="one job to start")
        shown = json.loads(project.run("pool", "--json").stdout)
        assert (shown["size"], shown["running"], shown["waiting"]) == (1, 1, 3)
        grown = project.run("pool", "3")
        assert grown.returncode == 0 and grown.stdout.startswith("pool: 3 at once;")
        wait_until(lambda: log.read_text().count("start") == 3, what="two more jobs to start")
        assert project.status()["pool"]["size"] == 3  # type: ignore[index]
        assert project.run("pool", "1").returncode == 0
        (project.root / "go-1").touch()
        wait_until(lambda: log.read_text().count("end") == 1, what="a job to end")
        assert json.loads(project.run("pool", "--json").stdout)["running"] == 2
        assert log.read_text().count("start") == 3
        refused = project.run("pool", "0")
        assert (refused.returncode, refused.stderr) == (2, "procctl: pool: size must be 1 to 100,000, got 0\n")
        for item in (2, 3, 4):
            (project.root / f"go-{item}").touch()
        assert proc.wait(timeout=60) == 0
    finally:
        for item in (1, 2, 3, 4):
            (project.root / f"go-{item}").touch()
        if proc.poll() is None:
            interrupt(proc)
    assert log.read_text().count("end") == 4
