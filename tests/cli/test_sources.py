"""The manifest and its env files are regular files of a bounded size: a
FIFO, a device or a file past 64 MiB named as one is one line and exit 2,
at once, from `check`, `import` and a running supervisor's `reload` alike
(which went on answering nothing while it waited on a FIFO)."""

from __future__ import annotations

import os

import pytest

from conftest import Project
from procctl.config.source import MAX_SOURCE_BYTES


@pytest.mark.parametrize(
    ("env_file", "why"),
    [("fifo", "it is a FIFO, not a regular file"), ("/dev/zero", "it is a device, not a regular file"), ("big.env", "it is larger than 64 MiB")],
)
def test_an_env_file_that_is_no_regular_file_or_too_big(project: Project, env_file: str, why: str) -> None:
    os.mkfifo(project.root / "fifo")
    with open(project.root / "big.env", "wb") as big:
        big.truncate(MAX_SOURCE_BYTES + 1)
    project.write(f'[settings]\nenv_file = "{env_file}"\n[process.a]\ncmd = "true"\n')
    for args in (("check",), ("run", "--plain")):
        refused = project.run(*args, timeout=30)
        assert refused.returncode == 2 and refused.stdout == "", refused
        assert refused.stderr.startswith(f"procctl: {project.manifest}:2: settings.env_file: cannot read env file ") and refused.stderr.endswith(f": {why}\n"), refused.stderr


def test_a_manifest_or_procfile_that_is_no_regular_file(project: Project) -> None:
    os.mkfifo(project.root / "fifo")
    for args, why in (
        (("check", "-f", "/dev/zero"), "procctl: cannot read /dev/zero: it is a device, not a regular file\n"),
        (("check", "-f", "fifo"), f"procctl: cannot read {project.root / 'fifo'}: it is a FIFO, not a regular file\n"),
    ):
        refused = project.run(*args, timeout=30)
        assert (refused.returncode, refused.stderr) == (2, why), refused


def test_a_reload_onto_a_fifo_is_refused_and_the_supervisor_answers(project: Project) -> None:
    project.write('[process.a]\ncmd = "sleep 60"\n')
    os.mkfifo(project.root / "fifo")
    try:
        assert project.run("up", "-d").returncode == 0
        project.write('[settings]\nenv_file = "fifo"\n[process.a]\ncmd = "sleep 60"\n')
        refused = project.run("reload", timeout=30)
        assert refused.returncode == 2 and "cannot read env file" in refused.stderr and "FIFO" in refused.stderr, refused
        status = project.run("status", "--json", timeout=30)
        assert status.returncode == 0, status
    finally:
        project.run("down")
