"""SIGHUP and a closed stdout stop a run gracefully, never at once (SIGHUP
to a detached supervisor reloads its manifest).

Each service below traps SIGTERM and writes a marker file when it gets it: a
marker proves the stop was graceful (the guardian's SIGKILL, the old fate of
a SIGHUP, leaves none). A graceful stop also leaves the run in the history,
and the socket, the pid file and the lock free for the next supervisor."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from conftest import PY, Project, helper, wait_until

MANIFEST = f"""
[process.svc]
cmd = ["{PY}", "{helper("on_term.py")}", ".", "svc"]
[process.chatty]
cmd = ["{PY}", "-c", "import time, itertools\\nfor i in itertools.count():\\n    print('line', i, flush=True)\\n    time.sleep(0.01)"]
"""


def _ready(project: Project) -> bool:
    """svc is up and chatty has written: both have started (a stop that
    comes while a start still waits for its spawn skips it, and the history
    would then hold svc alone)."""
    chatty = project.logs / "chatty.log"
    return (project.root / "svc.ready").exists() and chatty.exists() and chatty.stat().st_size > 0


def _stopped_gracefully(project: Project) -> None:
    """svc got SIGTERM (its marker), the run is in the history, and the
    state directory is free for the next supervisor."""
    assert (project.root / "svc").exists(), "svc never got SIGTERM: it was killed, not stopped"
    runs = json.loads(project.run("history", "--json").stdout)["runs"]
    assert {row["instance"] for row in runs} >= {"svc", "chatty"}, runs
    assert not (project.root / ".procctl" / "procctl.sock").exists()
    assert not (project.root / ".procctl" / "supervisor.pid").exists()
    again = project.run("status")
    assert again.returncode == 3, again


def test_sighup_to_a_foreground_run_is_a_graceful_stop(project: Project) -> None:
    """1. `run --plain` in the foreground; its services up.
    2. SIGHUP to procctl (its terminal went away).
    3. Every service gets its stop signal; exit 130, as for SIGTERM; the
       summary is printed and the history has the run."""
    project.write(MANIFEST)
    proc = project.start("run", "--plain")
    wait_until(lambda: _ready(project), what="svc to be ready")
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=30) == 130
    out = proc.out_path.read_text()  # type: ignore[attr-defined]
    assert "stopping: hangup (SIGHUP" in out
    assert "2 stopped" in out
    _stopped_gracefully(project)


def test_sighup_to_a_detached_supervisor_reloads_its_manifest(project: Project) -> None:
    """1. `up -d`. 2. The manifest gains a process; SIGHUP to the supervisor:
    it applies the edit (the new process starts) and runs on, svc untouched.
    3. A manifest that does not load, SIGHUP again: one warning, the run goes
    on as it was. 4. `down` stops it gracefully."""
    project.write(MANIFEST)
    up = project.run("up", "-d")
    assert up.returncode == 0, up
    wait_until(lambda: _ready(project), what="svc to be ready")
    pid = json.loads(project.run("status", "--json").stdout)["pid"]
    project.write(MANIFEST + '[process.extra]\ncmd = "sleep 300"\n')
    os.kill(pid, signal.SIGHUP)

    def states() -> dict[str, str]:
        return {i["name"]: i["state"] for i in json.loads(project.run("status", "--json").stdout)["instances"]}

    wait_until(lambda: states().get("extra") == "running", what="the added process to start")
    assert states()["svc"] in ("running", "ready") and not (project.root / "svc").exists()
    project.write(MANIFEST + "[process.extra\n")
    os.kill(pid, signal.SIGHUP)
    log = project.root / ".procctl" / "supervisor.log"
    wait_until(lambda: "refused" in log.read_text(), what="the refusal")
    assert "stopping" not in log.read_text() and "Traceback" not in log.read_text()
    assert states().get("extra") == "running"
    project.write(MANIFEST + '[process.extra]\ncmd = "sleep 300"\n')
    assert project.run("down").returncode == 0
    _stopped_gracefully(project)


@pytest.mark.parametrize("view", ["plain", "live", "interactive"])
def test_a_closed_terminal_stops_the_run_gracefully(project: Project, view: str) -> None:
    """1. `run` with a pseudo-terminal as its controlling terminal: plain
       lines, the live table (stdin not a terminal) or the interactive view.
    2. The terminal closes (the master side goes away): the kernel sends
       SIGHUP, and every write to it fails (EIO), the summary's too.
    3. A graceful stop, exit 130, no traceback."""
    project.write(MANIFEST)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

    def controlling_terminal() -> None:
        fcntl.ioctl(1, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "procctl", "run", *(["--plain"] if view == "plain" else [])], cwd=project.root,
        env=project.env({"TERM": "xterm-256color"}), stdin=subprocess.DEVNULL if view == "live" else slave,
        stdout=slave, stderr=slave, start_new_session=True, preexec_fn=controlling_terminal,
    )  # fmt: skip
    project._started.append(proc)
    os.close(slave)
    try:
        # Keep reading (a full terminal would block its writer) until svc is up.
        while not _ready(project):
            if select.select([master], [], [], 0.1)[0]:
                os.read(master, 65536)
            assert proc.poll() is None
    finally:
        os.close(master)
    assert proc.wait(timeout=30) == 130
    _stopped_gracefully(project)


def _read_then_close(project: Project, *args: str) -> subprocess.Popen[bytes]:
    """Start procctl with stdout a pipe, read one line, close our end (`| head -1`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "procctl", *args], cwd=project.root, env=project.env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    project._started.append(proc)
    assert proc.stdout is not None
    wait_until(lambda: _ready(project), what="svc to be ready")
    assert proc.stdout.readline()
    proc.stdout.close()
    return proc


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    with proc.stderr:
        return proc.stderr.read().decode()


def test_a_closed_stdout_stops_the_run_with_141(project: Project) -> None:
    """1. `procctl run --plain | head -1`: the reader goes away.
    2. procctl says so on stderr, stops everything gracefully and exits 141
       (128 + SIGPIPE, as `yes | head -1` does), without a traceback."""
    project.write(MANIFEST)
    proc = _read_then_close(project, "run", "--plain")
    assert proc.wait(timeout=30) == 141
    err = _stderr(proc)
    assert "procctl: stdout was closed (its reader went away): stopping everything gracefully" in err
    assert "Traceback" not in err and "Exception ignored" not in err
    _stopped_gracefully(project)


def test_a_closed_event_stream_on_stdout_stops_the_run_too(project: Project) -> None:
    project.write(MANIFEST)
    proc = _read_then_close(project, "run", "--events", "-")
    assert proc.wait(timeout=30) == 141
    err = _stderr(proc)
    assert "stdout was closed" in err and "Traceback" not in err
    assert "2 stopped" in err  # the human summary went to stderr, as it does with --events -
    _stopped_gracefully(project)


def test_grouped_output_to_a_closed_stdout_stops_too(project: Project, tmp_path: Path) -> None:
    project.write(MANIFEST.replace('"svc"]', '"svc"]\ntimeout = "1s"\nrestart = "always"\nmax_restarts = 1000'))
    proc = _read_then_close(project, "run", "--output", "grouped")
    assert proc.wait(timeout=30) == 141
    assert "stdout was closed" in _stderr(proc)
