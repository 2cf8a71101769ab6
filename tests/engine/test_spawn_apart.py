"""Starts made while the supervisor holds many descriptors run on spawner
workers with a table of their own (engine/spawner.py, `call_apart`): the
children behave as any other, a failed exec reads the same, a start given
up is undone wherever it is, and no descriptor is left behind."""

from __future__ import annotations

import asyncio
import gc
import os
import select
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from procctl.engine.logfile import LogFile
from procctl.engine.process import Child
from procctl.engine.spawner import APART_FROM_FD, Spawner
from procctl.errors import SpawnError


def _open_descriptors() -> set[int]:
    """This process's descriptors, once the loops that ended are collected
    (a loop's epoll of children, engine/fdwatch.py, goes with it)."""
    gc.collect()
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _descriptors_once_warm(tmp_path: Path) -> set[int]:
    """What this process holds after one start on a spawner and its loop's
    end: what a start keeps for the next (the kept error pipes) is there."""

    async def start_one() -> None:
        with Spawner() as spawner:
            child = Child(("true",), cwd=tmp_path, env=dict(os.environ), spawner=spawner)
            await child.start()
            await child.wait()

    asyncio.run(start_one())
    return _open_descriptors()


@pytest.fixture
def crowded() -> Iterator[None]:
    """This process holds more descriptors than `APART_FROM_FD` (pipes,
    as a supervisor's running children would)."""
    held: list[int] = []
    try:
        while len(held) < APART_FROM_FD + 100:
            held.extend(os.pipe2(os.O_CLOEXEC))
        yield
    finally:
        for fd in held:
            os.close(fd)


def _child(tmp_path: Path, name: str, cmd: tuple[str, ...], spawner: Spawner, lines: list[tuple[str, str]], threads: list[str]) -> tuple[Child, int]:
    """A child whose apart spawns say on which thread they ran."""
    log_fd = os.open(tmp_path / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
    child = Child(cmd, cwd=tmp_path, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda s, d: lines.append((s, d)), spawner=spawner)
    apart = child._spawn_apart

    def spawn_apart():  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return apart()

    child._spawn_apart = spawn_apart  # type: ignore[method-assign]
    return child, log_fd


async def _crowd(tmp_path: Path, spawner: Spawner) -> None:
    """One start on a shared worker: it sees the table as it is."""
    first = Child(("true",), cwd=tmp_path, env=dict(os.environ), spawner=spawner)
    await first.start()
    await first.wait()
    assert spawner.crowded


def test_children_started_apart_read_write_and_exit_as_any_other(tmp_path: Path, crowded: None) -> None:
    """1. With the table crowded, five children start at once, apart.
    2. Each gets a line on its stdin, echoes it on stdout, writes stderr,
       exits 7. 3. Their output reached the callback and the logs, their
       codes are 7, and once all is closed no descriptor is left over."""
    script = 'read line; echo "got $line"; echo err >&2; exit 7'
    before = _descriptors_once_warm(tmp_path)
    lines: list[tuple[str, str]] = []
    threads: list[str] = []

    async def scenario() -> list[int]:
        logs = []
        with Spawner() as spawner:
            await _crowd(tmp_path, spawner)
            children = []
            for number in range(5):
                child, log_fd = _child(tmp_path, f"c{number}", ("sh", "-c", script), spawner, lines, threads)
                children.append(child)
                logs.append(log_fd)
            try:
                await asyncio.gather(*(child.start() for child in children))
                for number, child in enumerate(children):
                    assert child.write_stdin(f"hello {number}\n".encode())
                return [(await child.wait()).returncode for child in children]
            finally:
                for child in children:
                    child.kill()
                for log_fd in logs:
                    os.close(log_fd)

    assert asyncio.run(scenario()) == [7] * 5
    assert len(threads) == 5 and all(name.startswith("procctl-spawn-apart") for name in threads), threads
    assert sorted(text for stream, text in lines if stream == "stdout") == [f"got hello {n}\n" for n in range(5)]
    assert [text for stream, text in lines if stream == "stderr"] == ["err\n"] * 5
    assert (tmp_path / "c3.log").read_bytes() in (b"got hello 3\nerr\n", b"err\ngot hello 3\n")
    assert _open_descriptors() == before


def test_a_failed_exec_apart_is_the_same_one_line(tmp_path: Path, crowded: None) -> None:
    """A command that is not there, started apart: the same SpawnError as
    on any other path, nothing left open."""
    before = _descriptors_once_warm(tmp_path)
    threads: list[str] = []

    async def scenario() -> str:
        with Spawner() as spawner:
            await _crowd(tmp_path, spawner)
            child, log_fd = _child(tmp_path, "missing", ("no-such-command-anywhere",), spawner, [], threads)
            try:
                await child.start()
            except SpawnError as exc:
                return str(exc)
            finally:
                os.close(log_fd)
            return ""

    assert asyncio.run(scenario()) == "command not found: no-such-command-anywhere"
    assert threads and threads[0].startswith("procctl-spawn-apart")
    assert _open_descriptors() == before


@pytest.mark.parametrize("when", ["in-the-worker", "on-its-way"])
def test_a_start_given_up_apart_leaves_no_child_and_no_descriptor(tmp_path: Path, crowded: None, when: str) -> None:
    """The start's awaiting task is cancelled while the worker spawns
    ("in-the-worker": undone there, with the worker's numbers) or once the
    worker has sent it but before the loop took it ("on-its-way": undone
    on the loop, with the handed-over numbers). Either way the child is
    killed and reaped and every descriptor closed."""
    before = _descriptors_once_warm(tmp_path)
    spawned: list[int] = []
    entered, gate = threading.Event(), threading.Event()

    async def scenario() -> None:
        log_fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC)
        try:
            with Spawner() as spawner:
                await _crowd(tmp_path, spawner)
                child = Child(("sleep", "600"), cwd=tmp_path, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda s, d: None, spawner=spawner)
                real = child._spawn_apart

                def spawn_apart():  # type: ignore[no-untyped-def]
                    entered.set()
                    gate.wait(30)
                    made = real()
                    spawned.append(made[0][0])
                    return made

                child._spawn_apart = spawn_apart  # type: ignore[method-assign]
                starting = asyncio.ensure_future(child.start())
                while not entered.is_set():
                    await asyncio.sleep(0.005)
                if when == "in-the-worker":
                    starting.cancel()
                    await asyncio.sleep(0)
                    gate.set()
                else:
                    gate.set()
                    # The loop stays here until the worker's message is there.
                    channels = [ours for ours, _, _ in spawner._apart._channels]  # type: ignore[union-attr]
                    assert select.select(channels, [], [], 30)[0]
                    starting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await starting
        finally:
            gate.set()
            os.close(log_fd)

    asyncio.run(scenario())
    assert len(spawned) == 1
    assert not os.path.exists(f"/proc/{spawned[0]}")
    assert _open_descriptors() == before
