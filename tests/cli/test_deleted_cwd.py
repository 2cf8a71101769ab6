"""procctl started in a working directory that no longer exists (a build
directory another terminal cleaned) says so in one line, exit 2; a
manifest named by its absolute path needs no working directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import PY, Project

JOB = f"""
[process.job]
cmd = ["{PY}", "-c", "print('hello')"]
"""

@pytest.mark.parametrize("args", [("run", "--plain"), ("check",), ("status", "--json"), ("history",), ("exec", "--", "true"), ("benchmark", "true")])
def test_a_working_directory_deleted_under_procctl_is_one_line_and_exit_2(project: Project, args: tuple[str, ...]) -> None:
    """procctl started in a directory that was removed meanwhile (a build
    directory cleaned by another terminal): one line saying so, exit 2."""
    gone = project.root / "gone"
    gone.mkdir()
    done = subprocess.run(
        ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', gone, sys.executable, "-m", "procctl", *args],
        env=project.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr == "procctl: the current directory no longer exists: cd to one that does, or name the manifest with -f /ABSOLUTE/PATH\n"


def test_an_absolute_manifest_runs_from_a_deleted_working_directory(project: Project) -> None:
    """`run -f /ABSOLUTE/PATH` needs no working directory: it runs."""
    manifest = project.write(JOB)
    gone = project.root / "gone"
    gone.mkdir()
    done = subprocess.run(
        ["sh", "-c", 'cd "$0" && rmdir "$0" && exec "$@"', gone, sys.executable, "-m", "procctl", "run", "--plain", "-f", manifest],
        env=project.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, start_new_session=True,
    )  # fmt: skip
    assert done.returncode == 0, done
    assert project.log("job") == "hello\n"
