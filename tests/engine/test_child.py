"""engine.process.Child driven in-process on a real loop with real children."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import alive, helper

from procctl.engine.process import Child
from procctl.engine.tree import ProcessTree


def _child(tmp_path: Path, cmd: str | tuple[str, ...], lines: list[tuple[str, str]]) -> tuple[Child, int]:
    log_fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    child = Child(cmd, cwd=tmp_path, env=dict(os.environ), log_fd=log_fd, on_output=lambda s, d: lines.append((s, d)))
    return child, log_fd


def test_output_reaches_log_and_callback_with_streams(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []

    async def scenario() -> int:
        child, log_fd = _child(tmp_path, "echo out; echo err >&2; printf tail", lines)
        try:
            await child.start()
            return (await child.wait()).returncode
        finally:
            os.close(log_fd)

    assert asyncio.run(scenario()) == 0
    assert ("stdout", "out\n") in lines and ("stderr", "err\n") in lines and ("stdout", "tail\n") in lines
    # Both streams share the log in order of arrival; every byte is there.
    logged = (tmp_path / "child.log").read_bytes()
    assert sorted(logged) == sorted(b"out\nerr\ntail")


def test_stop_escalates_to_sigkill_and_reports_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def scenario() -> tuple[Child, bool, float]:
        child, log_fd = _child(tmp_path, (sys.executable, helper("ignore_term.py"), str(pid_file)), [])
        try:
            await child.start()
            while not pid_file.exists():
                await asyncio.sleep(0.02)
            waiter = asyncio.ensure_future(child.wait())
            began = time.monotonic()
            killed_hard = await child.stop(signal.SIGTERM, 0.3)
            await waiter
            return child, killed_hard, time.monotonic() - began
        finally:
            child.kill()
            os.close(log_fd)

    child, killed_hard, took = asyncio.run(scenario())
    assert killed_hard
    assert child.returncode == -signal.SIGKILL
    assert took >= 0.3
    assert not alive(int(pid_file.read_text()))


def test_graceful_stop_does_not_escalate(tmp_path: Path) -> None:
    async def scenario() -> tuple[Child, bool]:
        child, log_fd = _child(tmp_path, "sleep 30", [])
        try:
            await child.start()
            waiter = asyncio.ensure_future(child.wait())
            killed_hard = await child.stop(signal.SIGTERM, 10)
            await waiter
            return child, killed_hard
        finally:
            os.close(log_fd)

    child, killed_hard = asyncio.run(scenario())
    assert not killed_hard
    assert child.returncode == -signal.SIGTERM


@pytest.mark.parametrize("snapshot", [False, True], ids=["own-walk", "shared-snapshot"])
def test_stop_kills_a_setsid_grandchild(tmp_path: Path, snapshot: bool) -> None:
    # With a ProcessTree taken once for many stops (Ctrl-C of a whole run),
    # the escaped grandchild must be found just as by the child's own walk.
    pids_file = tmp_path / "pids"

    async def scenario() -> list[int]:
        child, log_fd = _child(tmp_path, (sys.executable, helper("tree.py"), str(pids_file)), [])
        try:
            await child.start()
            while not pids_file.exists():
                await asyncio.sleep(0.02)
            pids = [int(p) for p in pids_file.read_text().split()]
            known = ProcessTree() if snapshot else None
            if known is not None:
                assert {p.pid for p in known.descendants(child.pid)} == set(pids[1:])
            waiter = asyncio.ensure_future(child.wait())
            await child.stop(signal.SIGTERM, 5, known)
            await waiter
            return pids
        finally:
            child.kill()
            os.close(log_fd)

    pids = asyncio.run(scenario())
    assert len(pids) == 3
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(alive(pid) for pid in pids)


def test_missing_command_is_a_spawn_error(tmp_path: Path) -> None:
    from procctl.errors import SpawnError

    async def scenario() -> str:
        child, log_fd = _child(tmp_path, ("definitely-not-a-command-xyz",), [])
        try:
            await child.start()
        except SpawnError as exc:
            return str(exc)
        finally:
            os.close(log_fd)
        return ""

    assert asyncio.run(scenario()) == "command not found: definitely-not-a-command-xyz"


def test_stdin_larger_than_the_pipe_arrives_whole_and_rusage_is_kept(tmp_path: Path) -> None:
    # 1 MiB is 16 pipe buffers: the writes must wait for the child to read,
    # without blocking the loop, and nothing may be lost.
    payload = os.urandom(1 << 20).hex().encode()[: 1 << 20]
    lines: list[tuple[str, str]] = []
    reader = f"import sys, time, hashlib; time.sleep(0.3); print(hashlib.sha256(sys.stdin.buffer.read({len(payload)})).hexdigest())"

    async def scenario() -> tuple[int, Child, float]:
        child, log_fd = _child(tmp_path, (sys.executable, "-c", reader), lines)
        try:
            await child.start()
            began = time.monotonic()
            assert child.write_stdin(payload)
            # The write returned before the child read a byte (it sleeps first).
            returned_after = time.monotonic() - began
            return (await child.wait()).returncode, child, returned_after
        finally:
            child.kill()
            os.close(log_fd)

    import hashlib

    code, child, returned_after = asyncio.run(scenario())
    assert code == 0
    assert lines == [("stdout", hashlib.sha256(payload).hexdigest() + "\n")]
    assert returned_after < 0.3  # not a timing bound: the child sleeps 0.3 s before it reads anything
    assert child.usage is not None and child.usage.ru_utime + child.usage.ru_stime > 0
