"""`procctl run --rerun-failed`: only the `each` items that failed in the last
recorded run of their process, each under its own instance name. (On a
cluster: tests/cluster/test_dask_executor.py.)"""

from __future__ import annotations

import json

from conftest import Project

MANIFEST = """
[settings]
fail_fast = false

[process.db]
cmd = "echo db >> ran.txt"

[process.job]
cmd = 'echo "$PROCCTL_ITEM" >> ran.txt; test ! -e "fail-$PROCCTL_ITEM" || exit 3; test ! -e "hang-$PROCCTL_ITEM" || sleep 30'
each = ["a", "b", "c", "d", "e"]
timeout = "1s"
depends_on = { db = "succeeded" }
"""


def _ran(project: Project) -> list[str]:
    path = project.root / "ran.txt"
    lines = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def test_only_the_items_that_failed_last_time_run_again(project: Project) -> None:
    """1. b fails (exit 3) and d times out; the rest exit 0.
    2. --rerun-failed runs b and d only, as job[2] and job[4] (services and
       dependencies run as always); they fail again.
    3. d is fixed: --rerun-failed runs b and d, and only b fails.
    4. b is fixed: --rerun-failed runs b alone (the last run of job).
    5. Nothing failed last time: nothing runs, exit 0."""
    project.write(MANIFEST)
    (project.root / "fail-b").touch()
    (project.root / "hang-d").touch()
    first = project.run("run", "--plain")
    assert first.returncode == 1, first.stdout + first.stderr
    assert sorted(_ran(project)) == ["a", "b", "c", "d", "db", "e"]

    again = project.run("run", "--plain", "--rerun-failed", "--json")
    assert again.returncode == 1, again.stdout + again.stderr
    assert sorted(_ran(project)) == ["b", "d", "db"]
    summary = json.loads(again.stdout[again.stdout.index("{") :])
    assert {row["name"]: (row["state"], row["exit_code"]) for row in summary["instances"]} == {"db": ("exited", 0), "job[2]": ("failed", 3), "job[4]": ("timed_out", None)}

    (project.root / "hang-d").unlink()
    third = project.run("run", "--plain", "--rerun-failed")
    assert third.returncode == 1
    assert sorted(_ran(project)) == ["b", "d", "db"]

    (project.root / "fail-b").unlink()
    fourth = project.run("run", "--plain", "--rerun-failed")
    assert fourth.returncode == 0
    assert _ran(project) == ["db", "b"]
    assert "job[2]" in fourth.stdout and "job[4]" not in fourth.stdout
    nothing = project.run("run", "--plain", "--rerun-failed")
    assert nothing.returncode == 0 and _ran(project) == []
    assert nothing.stderr.strip() == "procctl: nothing to rerun: no item failed in the last run of job"


def test_without_a_recorded_run_or_an_each_process_it_is_a_usage_error(project: Project) -> None:
    project.write(MANIFEST)
    never = project.run("run", "--plain", "--rerun-failed")
    assert never.returncode == 2 and never.stdout == ""
    assert never.stderr.strip() == "procctl: --rerun-failed: no recorded run of job to take failed items from"
    plain = project.run("run", "--plain", "--rerun-failed", "db")
    assert plain.returncode == 2
    assert plain.stderr.strip() == "procctl: --rerun-failed: no `each` process in this run"
    assert not (project.root / "ran.txt").exists()
