"""The interactive view's library is imported only when the view is used:
`status --json` and `run --plain` never pay for it (nor for the file
watcher, without `watch`)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from conftest import Project, wait_until


def _modules(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")}


def _imported(project: Project, *args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "procctl", *args], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=60)
    return done.returncode, _modules(done.stderr)


def test_plain_runs_and_status_json_never_import_textual(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 30"\n[process.b]\ncmd = "echo hi"\n')
    code, modules = _imported(project, "run", "--plain", "b")
    assert code == 0 and "textual" not in modules and "rich" in modules  # rich: the summary table
    assert "watchfiles" not in modules  # no process has `watch`
    supervisor = project.start("run", "--plain", "a")
    try:
        wait_until(lambda: project.run("status", "--json").returncode == 0, what="the supervisor to answer")
        code, modules = _imported(project, "status", "--json")
        assert code == 0 and not {"textual", "rich", "watchfiles"} & modules
    finally:
        supervisor.terminate()
        supervisor.wait(timeout=30)


def test_the_view_on_a_terminal_does_import_it(project: Project) -> None:
    project.write('[process.b]\ncmd = "echo hi"\n')
    master, slave = pty.openpty()
    env = project.env({"TERM": "xterm-256color"})
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "procctl", "run"], cwd=project.root, env=env,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    raw = b""
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    raw += os.read(master, 1 << 16)
                except OSError:
                    break
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        os.close(master)
    assert "textual" in _modules(raw.decode(errors="replace").replace("\r", ""))


def test_the_command_line_loads_neither_the_view_nor_asyncio_for_version(project: Project) -> None:
    """The `top` command is registered with the rest: its imports wait for it to run."""
    code, modules = _imported(project, "--version")
    assert code == 0 and not {"textual", "asyncio"} & modules, modules & {"textual", "asyncio"}
