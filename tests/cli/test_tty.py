"""`tty = true`: a process on a pseudo-terminal of its own — it sees a
terminal, its colour codes reach the log byte for byte, `send` still writes
to its input, its window size is procctl's terminal's and follows it.
Without `tty`, nothing changes."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

from conftest import PY, Project, wait_until

CHILD = r"""
import os, signal, sys
def size(*_):
    got = os.get_terminal_size(1)
    print("size", got.lines, got.columns, flush=True)
signal.signal(signal.SIGWINCH, size)
print("isatty", os.isatty(0), os.isatty(1), os.isatty(2), "controlling", os.ttyname(0) == os.ttyname(1) and os.tcgetpgrp(0) == os.getpgrp(), flush=True)
sys.stdout.write("\x1b[31mred\x1b[0m\n")
sys.stdout.flush()
sys.stderr.write("to stderr\n")
size()
for line in sys.stdin:
    print("got", line.strip(), flush=True)
"""


def _set_size(fd: int, rows: int, columns: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def test_a_tty_process_sees_a_terminal_and_its_bytes_reach_the_log(project: Project) -> None:
    """1. procctl runs with a terminal of 30×100 (its stdin here), `t` with
       `tty = true`, `plain` without.
    2. t sees a terminal on 0, 1 and 2 (its controlling one); its colour
       codes are in its log as written, stderr too; its size is 30×100.
    3. `procctl send t hello` reaches its stdin (and is not echoed).
    4. procctl's terminal becomes 40×120 (SIGWINCH): so does t's.
    5. plain saw no terminal."""
    (project.root / "child.py").write_text(CHILD)
    project.write(f"""
        [process.t]
        cmd = ["{PY}", "child.py"]
        tty = true

        [process.plain]
        cmd = "test -t 1 && echo plain: a tty || echo plain: no tty; exec sleep 600"
    """)
    master, slave = pty.openpty()
    _set_size(slave, 30, 100)
    out = open(project.root / "procctl.out", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "procctl", "run", "--plain"],
        cwd=project.root, env=project.env(), stdin=slave, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out.close()
    try:
        wait_until(lambda: "size 30 100" in project.log("t"), what="t to report its size")
        log = (project.logs / "t.log").read_bytes()
        assert b"isatty True True True controlling True\n" in log
        assert b"\x1b[31mred\x1b[0m\nto stderr\nsize 30 100\n" in log
        assert b"\r" not in log

        sent = project.run("send", "t", "hello")
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: "got hello" in project.log("t"), what="t to read what was sent")
        assert "hello\n" not in project.log("t").replace("got hello\n", "")

        _set_size(slave, 40, 120)
        os.kill(proc.pid, signal.SIGWINCH)
        wait_until(lambda: "size 40 120" in project.log("t"), what="t's terminal to follow procctl's")
        wait_until(lambda: "plain: " in project.log("plain"), what="plain to run")
        assert project.log("plain") == "plain: no tty\n"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        os.close(master)
        os.close(slave)
    assert "t       | size 30 100" in (project.root / "procctl.out").read_text()
