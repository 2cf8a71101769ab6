"""engine.process.Child driven in-process on a real loop with real children."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import psutil
import pytest

from conftest import alive, helper, wait_until

from procctl.engine import forkexec
from procctl.engine.logfile import LogFile
from procctl.engine.process import Child
from procctl.engine.tree import ProcessTree


@pytest.fixture(params=["fork_exec", "Popen"])
def spawn_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways a child is started: CPython 3.11's own fork and exec, and
    `subprocess.Popen`, which any other Python uses (engine/forkexec.py)."""
    if request.param == "Popen":
        monkeypatch.setattr(forkexec, "DIRECT", False)
    yield str(request.param)
    # Every child started through Popen was reaped and let go of.
    assert not forkexec._held


def _child(tmp_path: Path, cmd: str | tuple[str, ...], lines: list[tuple[str, str]]) -> tuple[Child, int]:
    log_fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    child = Child(cmd, cwd=tmp_path, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda s, d: lines.append((s, d)))
    return child, log_fd


def test_output_reaches_log_and_callback_with_streams(tmp_path: Path, spawn_path: str) -> None:
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


def test_stop_escalates_to_sigkill_and_reports_it(tmp_path: Path, spawn_path: str) -> None:
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


def test_missing_command_is_a_spawn_error(tmp_path: Path, spawn_path: str) -> None:
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


def _graceful_stop(tmp_path: Path, cmd: str | tuple[str, ...], lines: list[tuple[str, str]], timeout_s: float = 30) -> tuple[Child, bool]:
    """Start `cmd`, wait for its 'up' line, stop it gracefully; (child, killed hard)."""

    async def scenario() -> tuple[Child, bool]:
        child, log_fd = _child(tmp_path, cmd, lines)
        try:
            await child.start()
            while not any("up" in text for _, text in lines):
                await asyncio.sleep(0.02)
            waiter = asyncio.ensure_future(child.wait())
            killed_hard = await child.stop(signal.SIGTERM, timeout_s)
            await waiter
            return child, killed_hard
        finally:
            child.kill()
            os.close(log_fd)

    return asyncio.run(scenario())


def test_a_shell_wrapped_child_finishes_its_shutdown(tmp_path: Path) -> None:
    """1. A string command: /bin/sh runs the child (dash forks it: the shell
       is the group's leader).
    2. The stop signal reaches both: the shell dies at once; the child prints
       'flushing', takes its time and prints 'clean exit'.
    3. Its last line reaches the log and the callback, with no SIGKILL."""
    lines: list[tuple[str, str]] = []
    child, killed_hard = _graceful_stop(tmp_path, f"'{sys.executable}' '{helper('graceful.py')}' 3 0.5", lines)
    assert not killed_hard
    assert b"flushing\nclean exit\n" in (tmp_path / "child.log").read_bytes()
    assert ("stdout", "clean exit\n") in lines


def test_a_graceful_stop_waits_for_a_tree_whose_leader_dies_first(tmp_path: Path) -> None:
    """1. A list command whose leader (a shell of its own) dies of the stop
       signal at once, leaving a child that traps it.
    2. The stop waits for that child, whose last line reaches the log; the
       leader's own death is what the run reports."""
    lines: list[tuple[str, str]] = []
    script = f"'{sys.executable}' '{helper('graceful.py')}' 4 0.5 & wait"
    child, killed_hard = _graceful_stop(tmp_path, ("/bin/sh", "-c", script), lines)
    assert not killed_hard
    assert child.returncode == -signal.SIGTERM
    assert (tmp_path / "child.log").read_bytes().endswith(b"flushing\nclean exit\n")


def test_a_graceful_stop_waits_for_a_member_that_closed_its_output(tmp_path: Path) -> None:
    """A member of the group that closed its stdout and stderr (as daemons
    do) holds no pipe: the stop still waits for it, then finds it gone."""
    marker = tmp_path / "done"
    script = (
        "import os, signal, sys, time\n"
        f"def stop(*_):\n    time.sleep(0.5)\n    open({str(marker)!r}, 'w').close()\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('up', flush=True)\n"
        "os.close(1); os.close(2)\n"
        "while True: time.sleep(0.05)\n"
    )
    lines: list[tuple[str, str]] = []
    child, killed_hard = _graceful_stop(tmp_path, ("/bin/sh", "-c", f"'{sys.executable}' -c \"$0\" & wait", script), lines)
    assert not killed_hard
    assert marker.exists()


def test_a_leader_that_ends_on_its_own_still_ends_its_tree(tmp_path: Path, spawn_path: str) -> None:
    """No stop was asked: the leader exits, and what it left in its group is
    killed at once (no orphans), however it would have shut down."""
    pid_file = tmp_path / "pid"

    async def scenario() -> Child:
        child, log_fd = _child(tmp_path, f"'{sys.executable}' '{helper('ignore_term.py')}' '{pid_file}' & while [ ! -s '{pid_file}' ]; do sleep 0.02; done; exit 0", [])
        try:
            await child.start()
            await child.wait()
            return child
        finally:
            child.kill()
            os.close(log_fd)

    child = asyncio.run(scenario())
    assert child.returncode == 0
    # SIGKILL went to the group as the leader ended; its delivery takes a moment.
    wait_until(lambda: not alive(int(pid_file.read_text())), what="the left-behind child to die")


def test_a_descendant_in_a_session_of_its_own_is_stopped_gracefully_too(tmp_path: Path) -> None:
    """A descendant that left the group (setsid) gets the stop signal as
    well, and may finish its shutdown: no SIGKILL."""
    lines: list[tuple[str, str]] = []
    script = f"setsid '{sys.executable}' '{helper('graceful.py')}' 5 0.3 & wait"
    child, killed_hard = _graceful_stop(tmp_path, ("/bin/sh", "-c", script), lines)
    assert not killed_hard
    assert (tmp_path / "child.log").read_bytes().endswith(b"flushing\nclean exit\n")


@pytest.mark.parametrize("case", ["missing", "not-executable", "no-cwd"])
def test_spawn_errors_from_a_spawner_thread_are_the_same_one_line(tmp_path: Path, case: str, spawn_path: str) -> None:
    from procctl.engine.spawner import Spawner
    from procctl.errors import SpawnError

    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    cmd, cwd, expected = {
        "missing": (("definitely-not-a-command-xyz",), tmp_path, "command not found: definitely-not-a-command-xyz"),
        "not-executable": ((str(script),), tmp_path, f"cannot execute {script}: permission denied"),
        "no-cwd": (("true",), tmp_path / "gone", f"working directory {tmp_path / 'gone'} does not exist"),
    }[case]
    threads: list[str] = []

    async def scenario() -> str:
        log_fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with Spawner() as spawner:
                child = Child(cmd, cwd=cwd, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda s, d: None, spawner=spawner)
                real = child._spawn

                def spawn():  # type: ignore[no-untyped-def]
                    threads.append(threading.current_thread().name)
                    return real()

                child._spawn = spawn  # type: ignore[method-assign]
                try:
                    await child.start()
                except SpawnError as exc:
                    return str(exc)
                return ""
        finally:
            os.close(log_fd)

    assert asyncio.run(scenario()) == expected
    assert threads and threads[0] != threading.main_thread().name


def test_a_start_abandoned_while_spawning_leaves_no_child(tmp_path: Path, spawn_path: str) -> None:
    """The runner awaiting a spawn is cancelled while the spawner thread is
    in it: the child it makes is killed and reaped there, not lost."""
    from procctl.engine.spawner import Spawner

    spawned: list[int] = []
    entered, gate = threading.Event(), threading.Event()

    async def scenario() -> None:
        log_fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with Spawner() as spawner:
                child = Child(("sleep", "600"), cwd=tmp_path, env=dict(os.environ), log=LogFile(log_fd), on_output=lambda s, d: None, spawner=spawner)
                real = child._spawn

                def spawn():  # type: ignore[no-untyped-def]
                    entered.set()
                    gate.wait(30)
                    made = real()
                    spawned.append(made[0])
                    return made

                child._spawn = spawn  # type: ignore[method-assign]
                starting = asyncio.ensure_future(child.start())
                while not entered.is_set():
                    await asyncio.sleep(0.005)
                starting.cancel()
                await asyncio.sleep(0)
                gate.set()
                with pytest.raises(asyncio.CancelledError):
                    await starting
            # Closing the spawner waited for the thread, and with it the undo.
        finally:
            gate.set()
            os.close(log_fd)

    asyncio.run(scenario())
    assert len(spawned) == 1
    assert not os.path.exists(f"/proc/{spawned[0]}")


def _run_on_a_spawner(argv: tuple[str, ...], log: LogFile, cwd: Path) -> int:
    """Start `argv` through a spawner thread with `log`, wait for its end
    (its log closed after); its exit code."""
    from procctl.engine.spawner import Spawner

    async def scenario() -> int:
        with Spawner() as spawner:
            child = Child(argv, cwd=cwd, env=dict(os.environ), log=log, on_output=lambda s, d: None, spawner=spawner)
            await child.start()
            return (await child.wait()).returncode

    try:
        return asyncio.run(scenario())
    finally:
        log.close()


@pytest.mark.parametrize("there", [True, False], ids=["file-there", "no-file-yet"])
def test_a_logs_file_is_opened_with_the_spawn_or_made_with_the_first_byte(tmp_path: Path, there: bool) -> None:
    """A log whose file is there already (a restart's) gets it in the same
    spawner call as the spawn, not on the loop's thread. One without a file
    yet is made at the child's first byte, on the loop's thread (the spawn
    only looked); the child's output reaches it either way."""
    path = tmp_path / "child.log"
    if there:
        path.write_bytes(b"")
    calls: list[tuple[bool, str]] = []

    def opener(create: bool) -> int:
        calls.append((create, threading.current_thread().name))
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0))
        except FileNotFoundError:
            return -1

    assert _run_on_a_spawner(("echo", "hello"), LogFile(opener=opener), tmp_path) == 0
    main = threading.main_thread().name
    assert calls[0][0] is False and calls[0][1] != main
    assert calls[1:] == ([] if there else [(True, main)])
    assert path.read_bytes() == b"hello\n"


def test_a_silent_child_leaves_no_log_file(tmp_path: Path) -> None:
    """A child that writes nothing: its log only looked for a file, and
    made none."""
    path = tmp_path / "child.log"
    calls: list[bool] = []

    def opener(create: bool) -> int:
        calls.append(create)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if create else -1

    assert _run_on_a_spawner(("true",), LogFile(opener=opener), tmp_path) == 0
    assert calls == [False] and not path.exists()


def test_a_log_closed_while_its_file_is_being_opened_keeps_no_descriptor(tmp_path: Path) -> None:
    """The start is given up (its runner cancelled, its log closed) while
    the spawner thread opens the log's file: the file opened after the
    close is closed there, and no child is left."""
    from procctl.engine.spawner import Spawner

    entered, gate = threading.Event(), threading.Event()
    made: list[int] = []

    (tmp_path / "child.log").write_bytes(b"")  # (a file there already: opened with the spawn)

    def opener(create: bool) -> int:
        entered.set()
        gate.wait(30)
        fd = os.open(tmp_path / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        made.append(fd)
        return fd

    log = LogFile(opener=opener)

    def log_is_open(fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == str(tmp_path / "child.log")
        except OSError:
            return False

    async def scenario() -> None:
        try:
            with Spawner() as spawner:
                child = Child(("sleep", "600"), cwd=tmp_path, env=dict(os.environ), log=log, on_output=lambda s, d: None, spawner=spawner)
                starting = asyncio.ensure_future(child.start())
                while not entered.is_set():
                    await asyncio.sleep(0.005)
                starting.cancel()
                log.close()  # as the runner's end does
                gate.set()
                with pytest.raises(asyncio.CancelledError):
                    await starting
            # Closing the spawner waited for the thread, and with it the undo.
        finally:
            gate.set()

    asyncio.run(scenario())
    assert len(made) == 1 and not log_is_open(made[0]) and log.fd == -1
    # (The spawn itself was undone: its child, a `sleep` in tmp_path, is gone.)
    assert not [proc for proc in psutil.process_iter(["cwd"]) if proc.info["cwd"] == str(tmp_path)]


def test_a_spawner_call_hands_back_results_and_errors_and_undoes_a_late_cancel() -> None:
    """Results and exceptions come back from the thread; a call whose caller
    was cancelled after the call ended, before the loop took its outcome,
    is undone on the loop (the worker thread had already handed it over)."""
    from procctl.engine.spawner import Spawner, _Call, _Outbox

    undone: list[tuple[int, str]] = []

    def fail() -> int:
        raise PermissionError("no")

    async def scenario() -> int:
        with Spawner() as spawner:
            got = await spawner.call(lambda: 41)
            with pytest.raises(PermissionError):
                await spawner.call(fail)
        loop = asyncio.get_running_loop()
        call = _Call(lambda: 7, lambda value: undone.append((value, threading.current_thread().name)), _Outbox(loop))
        call.run()  # as a worker does: the outcome is now on its way to the loop
        call.future.cancel()
        call.give_up()
        for _ in range(3):
            await asyncio.sleep(0)
        return got + 1

    assert asyncio.run(scenario()) == 42
    assert undone == [(7, threading.main_thread().name)]


def test_spawner_outcomes_that_end_together_wake_the_loop_once() -> None:
    """1. Calls that end before the loop takes their outcomes reach their
    callers with one wake-up of the loop between them, each its own outcome.
    2. Outcomes for a loop that is closed are undone where they end."""
    from procctl.engine.spawner import _Call, _Outbox

    wakeups: list[object] = []

    async def scenario() -> list[object]:
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            wakeups.append(args[0])
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        outbox = _Outbox(loop)

        def fail() -> int:
            raise PermissionError("no")

        calls = [_Call(lambda n=n: n, None, outbox) for n in range(3)] + [_Call(fail, None, outbox)]
        workers = [threading.Thread(target=call.run) for call in calls]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return list(await asyncio.gather(*(call.future for call in calls), return_exceptions=True))

    outcomes = asyncio.run(scenario())
    assert outcomes[:3] == [0, 1, 2]
    assert isinstance(outcomes[3], PermissionError)
    assert len(wakeups) == 1

    closed = asyncio.new_event_loop()
    closed.close()
    undone: list[int] = []
    late = _Call(lambda: 5, undone.append, _Outbox(closed))
    late.run()
    assert undone == [5]
