"""The interactive view end to end: the real `procctl run` and `procctl top`
in a pseudo-terminal of a set size, keys pressed as a user types them, the
screen read through a terminal emulator (pyte), and the effect checked on
the real processes (`procctl status --json`, /proc, the log files)."""

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
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyte
import pytest

from conftest import PY, Project, alive, marked_pids, wait_until

pytestmark = pytest.mark.pty

TICKER = f"{PY} -u -c \"import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.05)\""
LONG_LINE = "start-" + "x" * 240 + "-end"


class Screen:
    """procctl on a pseudo-terminal of COLS × ROWS, and what it shows."""

    def __init__(self, project: Project, *args: str, cols: int = 110, rows: int = 32, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        environment = project.env({"TERM": "xterm-256color", **(env or {})})
        for name in ("NO_COLOR", "COLUMNS", "LINES"):
            environment.pop(name, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procctl", *args],
            cwd=project.root, env=environment, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""

    def pump(self, timeout: float = 0.05) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: the other side closed
                return
            self.raw += data
            self.stream.feed(data)

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, condition: Callable[[str], object], what: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            value = condition(self.text)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}; the screen:\n{self.text}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"procctl did not end; the screen:\n{self.text}")
            self.pump()
        for _ in range(10):
            self.pump(0.02)
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def screens(project: Project) -> Iterator[list[Screen]]:
    opened: list[Screen] = []
    try:
        yield opened
    finally:
        for screen in opened:
            screen.close()


def _status(project: Project) -> dict[str, Any] | None:
    done = project.run("status", "--json")
    return json.loads(done.stdout) if done.returncode == 0 else None


def _row(project: Project, name: str) -> dict[str, Any] | None:
    status = _status(project)
    return next((row for row in status["instances"] if row["name"] == name), None) if status else None


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _joined(text: str) -> str:
    """The screen's rows run together, for a line wrapped over several."""
    return "".join(line.strip() for line in text.splitlines())


def test_run_keys_restart_pause_and_read_a_long_line_then_q_stops_everything(project: Project, screens: list[Screen]) -> None:
    """1. `procctl run` on a 110×32 terminal: the table and the merged output.
    2. r, then y to its question, on the selected ticker: its pid changes (status --json).
    3. p: it is paused (state T in /proc) and its log stops growing; p again:
       it resumes and writes again.
    4. Enter on `long`: its line, longer than the terminal, is shown in full.
    5. q, then y: everything stops as on Ctrl-C (exit 130), nothing is left."""
    project.write(f"""
        [settings]
        metrics_interval = "200ms"
        [process.ticker]
        cmd = '''{TICKER}'''
        [process.long]
        cmd = "echo {LONG_LINE}; exec sleep 600"
    """)
    view = Screen(project, "run", "-j", "4")
    screens.append(view)
    view.wait_for(lambda text: "ticker" in text and "long" in text and "tick " in text and "r restart" in text, "the table, the output and the keys")
    first = wait_until(lambda: (_row(project, "ticker") or {}).get("pid"), what="ticker's pid")

    view.press("r")
    view.wait_for(lambda text: "Restart ticker?" in text, "the question before a restart")
    view.press("y")
    wait_until(lambda: (_row(project, "ticker") or {}).get("pid") not in (None, first), what="ticker to run with a new pid")
    view.wait_for(lambda text: "ticker: restart requested" in text, "the restart in the merged output")

    view.press("p")
    row = wait_until(lambda: (row := _row(project, "ticker")) and row["state"] == "paused" and row, what="ticker paused")
    pid = row["pid"]  # type: ignore[index]
    wait_until(lambda: _proc_state(pid) == "T", what="the ticker stopped by SIGSTOP")
    log = project.logs / "ticker.log"
    size = log.stat().st_size
    view.wait_for(lambda text: "ticker paused" in text, "the pause in the view")
    for _ in range(3):  # each a whole `procctl status` later: nothing more was written
        assert _row(project, "ticker")["state"] == "paused"  # type: ignore[index]
        assert log.stat().st_size == size
    view.press("p")
    wait_until(lambda: log.stat().st_size > size, what="the ticker to write again")

    view.press("j")
    view.press("\r")
    view.wait_for(lambda text: text.split()[0] == "long" and "following" in text.splitlines()[0], "the log view of long")
    view.wait_for(lambda text: LONG_LINE in _joined(text), "the whole long line in the log view")
    view.press("\x1b")
    view.wait_for(lambda text: "r restart" in text and "⏎ log" in text, "the table again")

    children = [pid for pid in marked_pids(project.marker) if pid != view.proc.pid]
    view.press("q")
    view.wait_for(lambda text: "Stop everything?" in text, "the question before stopping everything")
    view.press("y")
    assert view.wait_exit() == 130
    assert not [pid for pid in children if alive(pid)]


def test_top_attaches_to_a_running_supervisor_and_leaves_it_running(project: Project, screens: list[Screen]) -> None:
    """1. `procctl up -d`, then two `procctl top` at once.
    2. r and y in the first: the selected instance restarts (new pid).
    3. `procctl scale web=3` from a third process: the second view shows web.3
       and says it came from another terminal.
    4. q in the first: it leaves, the supervisor and the second view run on.
    Each view opens with what was written before it attached."""
    project.write(f"""
        [process.ticker]
        cmd = '''{TICKER}'''
        [process.web]
        cmd = "exec sleep 600"
        replicas = 2
        [process.early]
        cmd = "echo said-before-top; exec sleep 600"
    """)
    up = project.run("up", "-d", "-j", "8")
    assert up.returncode == 0, up.stderr
    try:
        wait_until(lambda: (project.logs / "early.log").exists() and b"said-before-top" in (project.logs / "early.log").read_bytes(),
                   what="early's line in its log")
        first = Screen(project, "top")
        screens.append(first)
        second = Screen(project, "top")
        screens.append(second)
        for view in (first, second):
            view.wait_for(lambda text: "ticker" in text and "web.2" in text and "tick " in text and "q leave" in text, "top's table, live output and keys")
            view.wait_for(lambda text: "said-before-top" in text, "a line written before top attached")
        pid = wait_until(lambda: (_row(project, "ticker") or {}).get("pid"), what="ticker's pid")
        first.press("r")
        first.wait_for(lambda text: "Restart ticker?" in text, "the question before a restart")
        first.press("y")
        wait_until(lambda: (_row(project, "ticker") or {}).get("pid") not in (None, pid), what="ticker restarted from top")
        scaler = project.start("scale", "web=3")
        assert scaler.wait(timeout=30) == 0
        second.wait_for(lambda text: "web.3" in text and f"web: scaled to 3 (from another terminal, pid {scaler.pid})" in text,
                        "the scale from another terminal")
        first.press("q")
        assert first.wait_exit() == 0
        # The supervisor runs on: the ticker, early and the three replicas.
        wait_until(lambda: (status := _status(project)) is not None and len([row for row in status["instances"] if row["state"] == "running"]) == 5,
                   what="five instances running after top left")
        second.pump()
        assert second.proc.poll() is None
    finally:
        assert project.run("down").returncode == 0
    # The second view sees its supervisor go, and leaves saying so.
    assert second.wait_exit() == 0
    assert "the supervisor has stopped" in second.raw.decode(errors="replace")


def test_top_without_a_terminal_prints_the_table_once_and_without_a_supervisor_exits_3(project: Project, screens: list[Screen]) -> None:
    project.write('[process.a]\ncmd = "exec sleep 600"\n')
    view = Screen(project, "top")
    screens.append(view)
    assert view.wait_exit() == 3
    assert "no supervisor is running" in view.text and "Traceback" not in view.text
    assert project.run("up", "-d").returncode == 0
    try:
        piped = project.run("top")
        assert piped.returncode == 0 and "running" in piped.stdout and " a " in piped.stdout
        once = project.run("top", "--once")
        assert once.returncode == 0 and " a " in once.stdout and "running" in once.stdout
    finally:
        assert project.run("down").returncode == 0


def test_a_dumb_terminal_gets_plain_lines(project: Project, screens: list[Screen]) -> None:
    project.write('[process.a]\ncmd = "echo hello from a"\n')
    view = Screen(project, "run", env={"TERM": "dumb"})
    screens.append(view)
    assert view.wait_exit() == 0
    assert "| hello from a" in view.text
    assert b"\x1b[?1049h" not in view.raw  # never the alternate screen
