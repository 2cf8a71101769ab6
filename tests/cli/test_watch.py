"""`watch`: a change of a watched file restarts the process once (a burst
of saves is one restart), says which file, and does not count against
`max_restarts`; ignored files restart nothing; `--no-watch` turns it off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import PY, Project, wait_until

MANIFEST = f"""
    [process.web]
    cmd = ["{PY}", "-c", "import os, time; print('web pid', os.getpid(), flush=True); time.sleep(600)"]
    watch = {{ paths = ["src/**/*.py"], ignore = ["skip_*.py"], debounce = "1s" }}
    restart = "on-failure"
    max_restarts = 1
"""


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _restarts(path: Path) -> list[str]:
    return [str(r["reason"]) for r in _records(path) if r["event"] == "restarting"]


def _inotify_fds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return count


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_burst_of_saves_is_one_restart_and_ignored_files_none(project: Project) -> None:
    """1. web watches src/**/*.py, ignoring skip_*.py, with a 1s debounce,
       and may be restarted once after a failure (max_restarts = 1).
    2. Five saves of src/pkg/a.py in a row, with changes to ignored files
       beside them (skip_me.py, __pycache__, .git, node_modules, a swap
       file, a file that no glob names): exactly one restart, which names
       src/pkg/a.py alone.
    3. A save of src/b.py: a second restart, naming it.
    4. web is killed: it is restarted, as max_restarts = 1 allows — the two
       restarts for changes did not count."""
    src = project.root / "src"
    for directory in ("pkg", "__pycache__", ".git", "node_modules"):
        (src / directory).mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("a = 0\n")
    project.write(MANIFEST)
    events_path = project.root / "events.jsonl"
    proc = project.supervise("--plain", "--events", str(events_path))
    try:
        out = proc.out_path  # type: ignore[attr-defined]
        wait_until(lambda: "web: watching src/**/*.py" in out.read_text(), what="the watch to be in force")
        supervisor_pid = int((project.root / ".procctl" / "supervisor.pid").read_text())
        assert _inotify_fds(supervisor_pid) >= 1
        for i in range(5):
            (src / "pkg" / "a.py").write_text(f"a = {i}\n")
        (src / "skip_me.py").write_text("ignored\n")
        (src / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
        (src / ".git" / "index.py").write_text("ignored\n")
        (src / "node_modules" / "x.py").write_text("ignored\n")
        (src / "pkg" / ".a.py.swp").write_text("ignored\n")
        (src / "pkg" / "notes.txt").write_text("not a .py file\n")
        wait_until(lambda: len(_restarts(events_path)) >= 1, what="the restart for a.py")
        (src / "b.py").write_text("b = 1\n")
        wait_until(lambda: len(_restarts(events_path)) >= 2, what="the restart for b.py")
        assert _restarts(events_path) == ["watch: src/pkg/a.py changed", "watch: src/b.py changed"]
        assert "web restarting in 0s (restart 1): watch: src/pkg/a.py changed" in out.read_text()

        pids = wait_until(lambda: [r["pid"] for r in _records(events_path) if r["event"] == "started"][2:], what="web to start a third time")
        os.kill(pids[0], signal.SIGKILL)  # type: ignore[index]
        wait_until(lambda: len([r for r in _records(events_path) if r["event"] == "started"]) == 4, what="web restarted after its failure")
        assert len(_restarts(events_path)) == 3
    finally:
        _stop(proc)


def test_no_watch_turns_it_off(project: Project) -> None:
    """`run --no-watch`: it says so, nothing watches (no inotify descriptor
    in the supervisor), and a save restarts nothing."""
    (project.root / "src").mkdir()
    project.write(MANIFEST)
    events_path = project.root / "events.jsonl"
    proc = project.supervise("--plain", "--no-watch", "--events", str(events_path))
    try:
        out = proc.out_path  # type: ignore[attr-defined]
        wait_until(lambda: "watch is off for this run (--no-watch): web" in out.read_text(), what="the notice")
        wait_until(lambda: any(r["event"] == "started" for r in _records(events_path)), what="web to start")
        (project.root / "src" / "a.py").write_text("a = 1\n")
        supervisor_pid = int((project.root / ".procctl" / "supervisor.pid").read_text())
        assert _inotify_fds(supervisor_pid) == 0
    finally:
        _stop(proc)
    assert _restarts(events_path) == []
    assert "watching" not in out.read_text()
