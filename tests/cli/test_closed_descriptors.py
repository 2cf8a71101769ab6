"""procctl started without a standard descriptor (`procctl run >&-`, a
parent that closed its stdin, stdout or stderr) works as if it were
/dev/null: the exit codes are right, nothing is a traceback, and no file
procctl opens takes the closed descriptor's number. A stdout that takes
no more (a full disk) is one line and exit 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PY, Project, wait_until


def _closing(project: Project, redirections: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m procctl ARGS` with the shell's `redirections` (`>&-`, `2>&-`
    or `<&-`) applied; stderr read when it is left open."""
    script = f'exec "$@" {redirections}'
    proc = subprocess.Popen(
        ["sh", "-c", script, "sh", sys.executable, "-m", "procctl", *args],
        cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


JOB = f"""
[process.job]
cmd = ["{PY}", "-c", "print('hello')"]
"""


@pytest.mark.parametrize("redirections", [">&-", "2>&-", "<&-", ">&- 2>&- <&-"])
def test_a_run_without_a_standard_descriptor_runs_to_its_exit_code(project: Project, redirections: str) -> None:
    """1. `run --plain` with stdout, stderr, stdin or all three closed.
    2. Exit 0, no traceback; the job's output is in its log."""
    project.write(JOB)
    done = _closing(project, redirections, "run", "--plain")
    assert done.returncode == 0, done
    assert "Traceback" not in done.stderr + done.stdout
    assert project.log("job") == "hello\n"
    (row,) = json.loads(project.run("history", "--json").stdout)["runs"]
    assert row["exit_code"] == 0, row


@pytest.mark.parametrize(
    ("args", "code"), [(("--version",), 0), (("check",), 0), (("status", "--json"), 3), (("logs", "nosuch"), 2)]
)
def test_the_quick_commands_without_stdout_or_stderr_keep_their_exit_codes(project: Project, args: tuple[str, ...], code: int) -> None:
    """`--version`, `check`, `status --json` with no supervisor (3) and an
    unknown name (2): the same exit code with stdout closed, and with
    stderr closed; the one-line error still said when stderr is open."""
    project.write(JOB)
    without_stdout = _closing(project, ">&-", *args)
    assert without_stdout.returncode == code, without_stdout
    assert "Traceback" not in without_stdout.stderr
    if code:
        assert len(without_stdout.stderr.splitlines()) == 1, without_stdout.stderr
    without_stderr = _closing(project, "2>&-", *args)
    assert without_stderr.returncode == code, without_stderr


def test_no_file_procctl_opens_takes_the_number_of_a_closed_stdout(project: Project) -> None:
    """1. `run --plain` of a service, its stdout closed. 2. While it runs,
    procctl's descriptor 1 is /dev/null: not its event log, a log file or
    its control socket, which would be written to as stdout."""
    project.write('[process.svc]\ncmd = "sleep 300"\n')
    script = 'exec "$@" >&-'
    with open(project.root / "procctl.err", "wb") as err:
        proc = subprocess.Popen(
            ["sh", "-c", script, "sh", sys.executable, "-m", "procctl", "run", "--plain"],
            cwd=project.root, env=project.env(), stdin=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: project.status() is not None, what="the supervisor to answer")
        assert Path(f"/proc/{proc.pid}/fd/1").resolve() == Path(os.devnull)
        assert project.run("down").returncode == 0
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in (project.root / "procctl.err").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("args", [("--version",), ("check",), ("check", "--json"), ("history", "--json"), ("--help",)])
def test_output_to_a_full_disk_is_one_line_and_exit_1(project: Project, args: tuple[str, ...]) -> None:
    """stdout on a device that takes no more (/dev/full: ENOSPC, as a full
    disk): one line saying so on stderr, exit 1, no traceback (as `echo
    hi > /dev/full` says "write error")."""
    project.write(JOB)
    done = _closing(project, ">/dev/full", *args)
    assert done.returncode == 1, done
    assert done.stderr == "procctl: cannot write its output: No space left on device\n"
