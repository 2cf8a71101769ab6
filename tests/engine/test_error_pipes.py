"""engine.forkexec's kept error pipes, with real children: a vforked start
hears of a failed exec on a pipe kept between starts, and nothing one start
reported reaches another, in this process or in a forked copy of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from procctl.engine import forkexec

pytestmark = pytest.mark.skipif(not forkexec.VFORK, reason="the kept pipes serve vforked children: CPython 3.11 on Linux")


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _open_pipes() -> set[tuple[int, int]]:
    """The (device, inode) of every pipe this process has open (listing the
    descriptors opens one more, so numbers alone would not tell)."""
    found = set()
    for fd in _open_fds():
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def _starts(argv: list[str], cwd: Path) -> int:
    """Start and reap `argv`: its exit code."""
    pid = forkexec.spawn(argv, cwd=str(cwd), env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _fails(argv: list[str], cwd: Path) -> BaseException:
    with pytest.raises(OSError) as caught:
        _starts(argv, cwd)
    return caught.value


def test_a_vforked_start_reuses_its_error_pipe_and_no_report_outlives_its_start(tmp_path: Path) -> None:
    """One kept pipe serves start after start (no pipe made, none left
    open), and what one failed start reported is never read by the next."""
    _starts(["true"], tmp_path)
    before = _open_fds()
    assert set(forkexec._kept_pipes._free) and all(pair[0] in before and pair[1] in before for pair in forkexec._kept_pipes._free)
    missing = tmp_path / "nope"
    for _ in range(5):
        assert _starts(["true"], tmp_path) == 0
        failed = _fails([str(missing)], tmp_path)
        assert isinstance(failed, FileNotFoundError) and failed.filename == str(missing)
    assert _open_fds() == before
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    denied = _fails([str(script)], tmp_path)
    assert isinstance(denied, PermissionError) and denied.filename == str(script)
    assert _starts(["sh", "-c", "exit 3"], tmp_path) == 3


def test_a_forked_copy_of_procctl_spawns_through_pipes_of_its_own(tmp_path: Path) -> None:
    """After a fork (a supervisor going to the background) the kept pipes are
    the parent's: the copy closes them and makes its own, so that neither
    reads a report of the other's children."""
    _starts(["true"], tmp_path)
    kept = set(forkexec._kept_pipes._free)
    assert kept
    kept_pipes = {(info.st_dev, info.st_ino) for info in (os.fstat(fd) for pair in kept for fd in pair)}
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        verdict = b"bad"
        try:
            closed = not (_open_pipes() & kept_pipes)
            failed = _fails([str(tmp_path / "nope")], tmp_path)
            if closed and isinstance(failed, FileNotFoundError) and _starts(["true"], tmp_path) == 0:
                verdict = b"ok"
        finally:
            os.write(result_w, verdict)
            os._exit(0)
    os.close(result_w)
    try:
        verdict = os.read(result_r, 16)
    finally:
        os.close(result_r)
        os.waitpid(pid, 0)
    assert verdict == b"ok"
    assert set(forkexec._kept_pipes._free) == kept
    assert _starts(["sh", "-c", "exit 4"], tmp_path) == 4


def test_a_start_with_a_pre_exec_step_hears_its_failure_on_a_pipe_of_its_own(tmp_path: Path) -> None:
    """A child with a pre-exec step is forked, not vforked: the parent goes on
    before it has exec'd, so only a pipe of its own can say how it ended."""
    _starts(["true"], tmp_path)
    kept = set(forkexec._kept_pipes._free)

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(subprocess.SubprocessError, match="Exception occurred in preexec_fn"):
        forkexec.spawn(["true"], cwd=str(tmp_path), env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=boom)
    assert set(forkexec._kept_pipes._free) == kept
    assert _starts(["true"], tmp_path) == 0
