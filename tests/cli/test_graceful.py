"""A graceful stop waits for the whole tree, whatever asked for it: a
service run through /bin/sh still finishes its shutdown, its last lines reach
the log and the screen, and its own exit code is what procctl records (a
simple command is exec'd by the shell, which dash would otherwise fork, lead
the group and die of the stop signal at once)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PY, Project, helper, marked_pids, wait_until

GRACEFUL = f"'{PY}' '{helper('graceful.py')}' 3 0.5"
"""Traps SIGTERM, prints 'flushing', takes half a second, prints 'clean
exit' and exits 3."""


def _log(project: Project, name: str) -> str:
    path = project.logs / f"{name}.log"
    return path.read_text() if path.exists() else ""


def _exit_codes(path: Path) -> list[int | None]:
    """The code of each of web's ends in an --events file."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [event["code"] for event in events if event["event"] == "exited" and event["name"] == "web"]


def _manifest(project: Project, extra: str = "") -> None:
    project.write(f"""
        [settings]
        stop_timeout = "60s"
        [process.web]
        cmd = "{GRACEFUL}"
    """ + extra)


def _ctrl_c(project: Project, proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)


def _sigterm(project: Project, proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)


def _kill(project: Project, proc: subprocess.Popen[bytes]) -> None:
    assert project.run("kill", "web").returncode == 0


def _scale_down(project: Project, proc: subprocess.Popen[bytes]) -> None:
    assert project.run("scale", "web=0").returncode == 0


TRIGGERS: dict[str, Callable[[Project, subprocess.Popen[bytes]], None]] = {
    "ctrl-c": _ctrl_c,
    "sigterm": _sigterm,
    "kill": _kill,
    "scale-down": _scale_down,
}


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_a_shell_wrapped_service_finishes_its_shutdown(project: Project, trigger: str) -> None:
    """1. web is a string command: /bin/sh runs the child that traps SIGTERM.
    2. Once it is up, a graceful stop is asked (Ctrl-C, SIGTERM to procctl,
       `kill`, `scale web=0`).
    3. It prints 'flushing' and, half a second later, 'clean exit': both
       reach its log and procctl's output; nothing is left running."""
    _manifest(project)
    events = project.root / "events.jsonl"
    proc = project.start("run", "--plain", "--events", str(events))
    try:
        wait_until(lambda: "up" in _log(project, "web"), what="web to be up")
        TRIGGERS[trigger](project, proc)
        wait_until(lambda: "clean exit" in _log(project, "web"), timeout=30, what="web's last line in its log")
        if trigger in ("kill", "scale-down"):
            wait_until(lambda: not marked_pids(project.marker) or proc.poll() is not None, timeout=30, what="web to end")
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "flushing\nclean exit\n" in _log(project, "web")
    assert re.search(r"web +\| clean exit", proc.out_path.read_text())  # type: ignore[attr-defined]
    assert "SIGKILL" not in proc.out_path.read_text()  # type: ignore[attr-defined]
    assert _exit_codes(events) == [3]  # web's own code, not the shell's death by SIGTERM
    assert not marked_pids(project.marker)


def test_restart_lets_the_run_before_finish(project: Project) -> None:
    """`restart web`: the first run finishes its shutdown before the second
    starts."""
    _manifest(project)
    events = project.root / "events.jsonl"
    proc = project.start("run", "--plain", "--events", str(events))
    try:
        wait_until(lambda: "up" in _log(project, "web"), what="web to be up")
        assert project.run("restart", "web").returncode == 0
        wait_until(lambda: _log(project, "web").count("up ") == 2, timeout=30, what="the second run")
        first, second = _log(project, "web").split("clean exit\n", 1)
        assert first.endswith("flushing\n") and second.startswith("up ")
        wait_until(lambda: _exit_codes(events) == [3], timeout=30, what="the first run's end in the events")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_down_lets_a_detached_service_finish(project: Project) -> None:
    _manifest(project)
    assert project.run("up", "-d").returncode == 0
    wait_until(lambda: "up" in _log(project, "web"), what="web to be up")
    assert project.run("down").returncode == 0
    assert _log(project, "web").endswith("flushing\nclean exit\n")
    assert re.search(r"web +\| clean exit", (project.root / ".procctl" / "supervisor.log").read_text())
    history = project.run("history", "--json")
    assert history.returncode == 0, history.stderr
    rows = json.loads(history.stdout)
    assert [(row["instance"], row["exit_code"]) for row in (rows if isinstance(rows, list) else rows["runs"])] == [("web", 3)]
    assert not marked_pids(project.marker)


@pytest.mark.parametrize("why", ["timeout", "fail_fast"])
def test_the_run_s_own_stops_wait_too(project: Project, why: str) -> None:
    """`run --timeout` and fail_fast (another process fails) stop web as
    gracefully as a request does."""
    if why == "timeout":
        _manifest(project)
        args = ["run", "--plain", "--timeout", "3s"]
    else:
        _manifest(project, '[process.fails]\ncmd = "while [ ! -s .procctl/logs/web.log ]; do sleep 0.05; done; exit 1"\n')
        args = ["run", "--plain"]
    result = project.run(*args, timeout=60)
    assert result.returncode == (124 if why == "timeout" else 1), result.stderr
    assert _log(project, "web").endswith("flushing\nclean exit\n")
    assert re.search(r"web +\| clean exit", result.stdout)
    assert not marked_pids(project.marker)
