"""The files a run writes in its own private `.procctl` are never written
through a link either: the pid file and an instance's log (a link there can
only be planted by someone who could already write the directory, but the
rule has no exceptions)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Project


def _plant(project: Project, tmp_path: Path, name: str) -> Path:
    target = tmp_path / "target"
    target.write_text("root's own data\n")
    project.write('[process.a]\ncmd = "echo hello"\n')
    state = project.root / ".procctl"
    (state / "logs").mkdir(parents=True)
    os.chmod(state, 0o700)
    os.chmod(state / "logs", 0o700)
    (state / name).symlink_to(target)
    return target


def test_a_link_as_the_pid_file_is_refused_and_never_written_through(project: Project, tmp_path: Path) -> None:
    target = _plant(project, tmp_path, "supervisor.pid")
    done = project.run("run", "--plain")
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "is a symbolic link: procctl never follows one" in done.stdout + done.stderr
    assert target.read_text() == "root's own data\n"


def test_a_link_as_a_log_is_moved_aside_with_the_earlier_run_never_written_through(project: Project, tmp_path: Path) -> None:
    """A new run moves the last run's logs to logs/past (a rename, which
    never follows a link) and writes its own log as a new regular file;
    reading the earlier run then refuses the link in one line."""
    target = _plant(project, tmp_path, "logs/a.log")
    done = project.run("run", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert target.read_text() == "root's own data\n"
    log = project.root / ".procctl" / "logs" / "a.log"
    assert not log.is_symlink() and log.read_text() == "hello\n"
    previous = project.run("logs", "--previous")
    assert previous.returncode == 2 and "Traceback" not in previous.stdout + previous.stderr
    assert "is a symbolic link: procctl never follows one" in previous.stderr
    assert "/.procctl/logs/past/" in previous.stderr, "the message names the link where it is"
    assert target.read_text() == "root's own data\n"
