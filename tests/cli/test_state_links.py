"""The files a run writes in its own private `.procctl` are never written
through a link either: the pid file and an instance's log (a link there can
only be planted by someone who could already write the directory, but the
rule has no exceptions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import Project


@pytest.mark.parametrize("name", ["supervisor.pid", "logs/a.log"])
def test_a_link_in_a_private_state_dir_is_never_written_through(project: Project, tmp_path: Path, name: str) -> None:
    target = tmp_path / "target"
    target.write_text("root's own data\n")
    project.write('[process.a]\ncmd = "echo hello"\n')
    state = project.root / ".procctl"
    (state / "logs").mkdir(parents=True)
    os.chmod(state, 0o700)
    os.chmod(state / "logs", 0o700)
    (state / name).symlink_to(target)
    done = project.run("run", "--plain")
    assert done.returncode != 0 and "Traceback" not in done.stdout + done.stderr
    assert "is a symbolic link: procctl never follows one" in done.stdout + done.stderr
    assert target.read_text() == "root's own data\n"
