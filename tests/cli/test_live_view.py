"""`procctl run` with its output on a terminal (a real pty) but no keyboard
(stdin is not a terminal): the live table, drawn only, and the summary after
it on every way out. With a keyboard too it is the interactive view
(tests/cli/test_interactive.py)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from conftest import Project, alive, marked_pids, wait_until

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """procctl with its stdout on a pty; what it drew, escape codes removed."""

    def __init__(self, project: Project, *args: str, stdout_file: str | None = None) -> None:
        self.master, slave = pty.openpty()
        env = project.env({"TERM": "xterm-256color", "COLUMNS": "150", "LINES": "40"})
        env.pop("NO_COLOR", None)
        stdout = open(stdout_file, "wb") if stdout_file else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "procctl", *args],
            cwd=project.root, env=env, stdin=subprocess.DEVNULL, stdout=stdout or slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        if stdout:
            stdout.close()
        self.raw = b""

    def pump(self, timeout: float = 0.1) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # EIO: the other side closed
                pass

    @property
    def text(self) -> str:
        return _ESCAPES.sub(b"", self.raw).decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() > deadline:
                pytest.fail(f"{needle!r} never appeared on the terminal:\n{self.text[-3000:]}")
            self.pump()

    def finish(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump()
        for _ in range(20):
            self.pump(0.05)
        assert self.proc.poll() is not None, "procctl did not end"
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(project: Project) -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    try:
        yield opened
    finally:
        for term in opened:
            term.close()


def test_a_terminal_gets_the_live_table_then_the_summary(project: Project, terminal: list[Terminal]) -> None:
    project.write("""
        [settings]
        max_parallel = 2
        metrics_interval = "200ms"
        [process.web]
        cmd = "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.25; done"
        [process.job]
        cmd = "sleep 0.2; echo done {item}"
        each = { range = [1, 6] }
    """)
    term = Terminal(project, "run")
    terminal.append(term)
    term.wait_for("last line")
    assert term.finish() == 0
    text = term.text
    # The header, the table's columns and the merged output tail.
    assert re.search(r"running \d  pool \d/2", text)
    for column in ("name", "state", "pid", "uptime", "cpu", "rss"):
        assert column in text
    assert re.search(r"web\s+running", text)
    assert "│ tick 8" in text
    assert "jobs/s" in text  # the progress bar of the each jobs
    # The live table is not the scrolling line format.
    assert not re.search(r"\d\d:\d\d:\d\d web\s+\| tick", text)
    # The summary, with the metrics columns.
    assert "peak rss" in text and "cpu time" in text
    assert "7 instances" in text


def test_ctrl_c_on_the_live_view_stops_everything_and_prints_the_summary(project: Project, terminal: list[Terminal]) -> None:
    project.write("""
        [process.sleeper]
        cmd = "sleep 600"
        replicas = 3
    """)
    term = Terminal(project, "run")
    terminal.append(term)
    wait_until(lambda: len(marked_pids(project.marker)) >= 4, what="three sleepers and procctl")
    children = [pid for pid in marked_pids(project.marker) if pid != term.proc.pid]
    term.wait_for("sleeper.3")
    os.kill(term.proc.pid, signal.SIGINT)
    assert term.finish() == 130
    assert not [pid for pid in children if alive(pid)]
    assert "peak rss" in term.text and "stopped" in term.text


def test_plain_forces_lines_on_a_terminal(project: Project, terminal: list[Terminal]) -> None:
    project.write('[process.a]\ncmd = "echo hello"\n')
    term = Terminal(project, "run", "--plain")
    terminal.append(term)
    assert term.finish() == 0
    assert re.search(r"\d\d:\d\d:\d\d a\s+\| hello", term.text)
    assert "last line" not in term.text


def test_events_on_stdout_leave_the_live_view_to_the_terminal_on_stderr(project: Project, terminal: list[Terminal]) -> None:
    # `procctl run --events - | jq`: stdout is a pipe for the stream; the
    # terminal is stderr, and the live view must be drawn there, not into the stream.
    project.write("""
        [process.web]
        cmd = "for i in 1 2 3 4; do echo tick $i; sleep 0.25; done"
    """)
    stream = project.root / "events.jsonl"
    term = Terminal(project, "run", "--events", "-", stdout_file=str(stream))
    terminal.append(term)
    assert term.finish() == 0
    records = [json.loads(line) for line in stream.read_text().splitlines()]
    assert any(r["event"] == "output" and r["line"] == "tick 4" for r in records)
    text = term.text
    assert re.search(r"running \d  pool \d/\d", text) and "last line" in text  # the live table's header and columns
    assert not re.search(r"\d\d:\d\d:\d\d web\s+\| tick", text)
    assert "procctl summary" in text


def test_a_line_redrawn_with_cr_is_one_line_in_the_stream_and_on_the_terminal(project: Project, terminal: list[Terminal]) -> None:
    """`loading 10%\\rloading 90%\\n` is one line (only \\n ends a line): the
    event stream carries it as written, and the live view's tail shows it
    once, as a terminal would show it last. (The tail used to split it in
    two while the stream kept one.)"""
    (project.root / "bar.py").write_text(
        "import sys, time\nsys.stdout.write('loading 10%\\rloading 90%\\n')\nsys.stdout.flush()\ntime.sleep(1.5)\n"
    )
    project.write(f'[process.bar]\ncmd = ["{sys.executable}", "bar.py"]\n')
    stream = project.root / "events.jsonl"
    term = Terminal(project, "run", "--events", "-", stdout_file=str(stream))
    terminal.append(term)
    assert term.finish() == 0
    records = [json.loads(line) for line in stream.read_text().splitlines()]
    assert [r["line"] for r in records if r["event"] == "output"] == ["loading 10%\rloading 90%"]
    assert "│ loading 90%" in term.text
    assert "│ loading 10%" not in term.text
