"""A flooding child's pipe is grown, within a bound, and every byte still
reaches the log (engine.pipes with real children and real pipes)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import sys
from pathlib import Path

import pytest

from conftest import helper

from procctl.engine import pipes
from procctl.engine.logfile import LogFile
from procctl.engine.process import Child


def test_a_flooding_childs_pipe_is_grown_and_a_quiet_one_is_not(tmp_path: Path) -> None:
    """1. A child writes to stdout until its pipe has grown (at most 256 MiB),
       and says nothing on stderr.
    2. Its stdout pipe is FLOOD_PIPE_BYTES, its stderr pipe the kernel's
       default; the log holds every byte it wrote (sha256); the pipe is no
       longer counted once it is closed."""
    report = tmp_path / "report"
    log_fd = os.open(tmp_path / "flood.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    grown_before = pipes.GROWN_PIPES.count

    async def scenario() -> int:
        child = Child((sys.executable, helper("flood.py"), str(report), "256"), cwd=tmp_path, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda stream, text: None)
        await child.start()
        return (await child.wait()).returncode

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        os.close(log_fd)
    stdout_pipe, stderr_pipe, digest, written = report.read_text().split()
    assert (int(stdout_pipe), int(stderr_pipe)) == (pipes.FLOOD_PIPE_BYTES, pipes.FULL_PIPE_BYTES)
    logged = (tmp_path / "flood.log").read_bytes()
    assert len(logged) == int(written) and hashlib.sha256(logged).hexdigest() == digest
    assert pipes.GROWN_PIPES.count == grown_before


def test_pipes_grown_at_once_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_GROWN_PIPES a pipe keeps the kernel's default until one of
    the grown ones is closed."""
    monkeypatch.setattr(pipes, "MAX_GROWN_PIPES", pipes.GROWN_PIPES.count + 2)
    made = [os.pipe() for _ in range(3)]
    try:
        first, second, third = (read for read, _ in made)
        assert pipes.GROWN_PIPES.grow(first) is True
        assert pipes.GROWN_PIPES.grow(second) is True
        assert pipes.GROWN_PIPES.grow(third) is None
        assert fcntl.fcntl(third, fcntl.F_GETPIPE_SZ) == pipes.FULL_PIPE_BYTES
        pipes.GROWN_PIPES.closed()
        assert pipes.GROWN_PIPES.grow(third) is True
        assert [fcntl.fcntl(read, fcntl.F_GETPIPE_SZ) for read, _ in made] == [pipes.FLOOD_PIPE_BYTES] * 3
    finally:
        for _ in range(2):
            pipes.GROWN_PIPES.closed()
        for read, write in made:
            os.close(read)
            os.close(write)
