"""The run history in .procctl/state.db, through `procctl run` and `procctl history`."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import PY, Project, helper


def _history(project: Project, *args: str) -> list[dict[str, object]]:
    result = project.run("history", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["runs"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_history_rows_match_what_ran(project: Project) -> None:
    project.write(f"""
        [settings]
        fail_fast = false
        metrics_interval = "100ms"
        [process.ok]
        cmd = "{PY} {helper('grow.py')} 64 64 0 & pid=$!; sleep 1; kill $pid"
        [process.bad]
        cmd = "exit 3"
        [process.job]
        cmd = "echo {{item}}"
        each = ["a", "b"]
    """)
    result = project.run("run", "--plain")
    assert result.returncode == 1
    rows = _history(project)
    by_instance = {row["instance"]: row for row in rows}
    assert set(by_instance) == {"ok", "bad", "job[1]", "job[2]"}
    assert by_instance["bad"]["exit_code"] == 3 and by_instance["bad"]["state"] == "failed"
    assert by_instance["ok"]["exit_code"] == 0 and by_instance["ok"]["state"] == "exited"
    assert by_instance["job[2]"]["item"] == "b" and by_instance["job[2]"]["command"] == "echo 'b'"
    ok = by_instance["ok"]
    assert ok["manifest"] == str(project.manifest)
    assert 0.9 <= ok["duration_s"] < 30  # type: ignore[operator]
    # The tree's peak: the python grandchild held 64 MiB under the shell.
    assert ok["peak_rss_bytes"] >= 64 << 20  # type: ignore[operator]
    assert ok["cpu_time_s"] is not None
    assert len({row["session"] for row in rows}) == 1

    again = project.run("run", "--plain", "bad")
    assert again.returncode == 1
    bad = _history(project, "bad")
    assert [row["exit_code"] for row in bad] == [3, 3]
    assert bad[0]["started_at"] > bad[1]["started_at"]  # type: ignore[operator]
    assert len(_history(project, "-n", "1")) == 1

    table = project.run("history")
    assert table.returncode == 0
    assert "job[2]" in table.stdout and "echo 'b'" in table.stdout and "failed" in table.stdout


def test_a_broken_database_warns_and_the_run_goes_on(project: Project) -> None:
    project.write('[process.a]\ncmd = "echo hello"\n')
    (project.root / ".procctl").mkdir()
    (project.root / ".procctl" / "state.db").write_bytes(b"this is not a database" * 100)
    result = project.run("run", "--plain")
    assert result.returncode == 0
    assert "| hello" in result.stdout
    assert "run history off for this run" in result.stdout and "state.db" in result.stdout
    broken = project.run("history")
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert "state.db" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1


def test_a_locked_database_does_not_stop_a_run(project: Project) -> None:
    project.write('[process.a]\ncmd = "echo hello"\n')
    assert project.run("run", "--plain").returncode == 0
    conn = sqlite3.connect(project.root / ".procctl" / "state.db")
    try:
        conn.execute("BEGIN EXCLUSIVE")
        result = project.run("run", "--plain")
        assert result.returncode == 0 and "| hello" in result.stdout
    finally:
        conn.close()
    # The rows kept while locked were not written; the history is still readable.
    assert len(_history(project)) >= 1


def test_no_runs_yet(project: Project) -> None:
    project.write('[process.a]\ncmd = "true"\n')
    result = project.run("history")
    assert result.returncode == 0 and "no runs recorded yet" in result.stdout
