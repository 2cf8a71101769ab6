"""The notification socket with real senders: raw datagrams, the real
systemd-notify, strangers outside every tree, oversized datagrams."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from conftest import PY, helper, wait_until

from procctl.engine.tree import owner as tree_owner
from procctl.engine.notify import MAX_DATAGRAM_BYTES, MAX_STATUS_CHARS, Notification, NotifyServer, parse

SD_NOTIFY = helper("sd_notify.py")


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[int, int, Notification]] = []
        self.refusals: list[tuple[int, str]] = []
        self.changed = asyncio.Event()

    def deliver(self, root: int, pid: int, message: Notification) -> None:
        self.messages.append((root, pid, message))
        self.changed.set()

    def refuse(self, pid: int, why: str) -> None:
        self.refusals.append((pid, why))
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        async def wait() -> None:
            # Woken by each delivery, and looking again now and then for
            # conditions no delivery announces (a file a child wrote).
            while not condition():
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 0.05)
                except TimeoutError:
                    pass

        await asyncio.wait_for(wait(), timeout)


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # As the supervisor starts an instance: in a session of its own.
    return subprocess.Popen(argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL)


def _end(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
        proc.wait()


def _serve(scenario: Callable[[NotifyServer[int], Received, set[int], dict[str, str]], Awaitable[None]]) -> None:
    async def main() -> None:
        roots: set[int] = set()
        got = Received()
        server: NotifyServer[int] = NotifyServer(lambda pid: tree_owner(pid, roots), got.deliver, got.refuse)
        address = server.open()
        env = dict(os.environ, NOTIFY_SOCKET=address)
        try:
            await scenario(server, got, roots, env)
        finally:
            server.close()

    asyncio.run(main())


def test_a_raw_datagram_from_a_descendant_is_delivered_to_its_root() -> None:
    """1. An instance's shell starts a program that sends READY=1 and a status.
    2. The server attributes it to the instance (its root), from the sender's
       credentials, and hands over exactly the documented keys."""

    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sh", "-c", f"'{PY}' '{SD_NOTIFY}' READY=1 'STATUS=loaded 3 tables' FOO=bar; exec sleep 60"], env)
        roots.add(root.pid)
        try:
            await got.until(lambda: bool(got.messages))
            owner, pid, message = got.messages[0]
            assert owner == root.pid and pid != root.pid
            assert message.ready and message.status == "loaded 3 tables"
            assert not got.refusals
        finally:
            _end(root)

    _serve(scenario)


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is not installed")
def test_the_real_systemd_notify_is_understood_and_released() -> None:
    """1. The instance runs `systemd-notify --ready --status=...` (it sends as
       its parent, then waits on BARRIER=1 until its descriptor is closed).
    2. READY and STATUS arrive for the instance; systemd-notify ends with 0,
       so the barrier's descriptor was closed."""

    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sh", "-c", "systemd-notify --ready --status='warming up'; exec sleep 60"], env)
        roots.add(root.pid)
        try:
            await got.until(lambda: any(m.ready for _, _, m in got.messages))
            ready = next(m for _, _, m in got.messages if m.ready)
            assert ready.status == "warming up"
            assert {owner for owner, _, _ in got.messages} == {root.pid}
        finally:
            _end(root)

    _serve(scenario)


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="systemd-notify is not installed")
def test_systemd_notify_ends_well_because_its_barrier_is_released(tmp_path: Path) -> None:
    """systemd-notify waits until the manager closes the descriptor it sent
    with BARRIER=1, and fails when it is not: its exit status 0 proves the
    server closed it."""
    done = tmp_path / "rc"

    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sh", "-c", f"systemd-notify STATUS=one; echo $? > '{done}'; exec sleep 60"], env)
        roots.add(root.pid)
        try:
            await got.until(lambda: done.exists() and done.read_text().strip() != "")
            assert done.read_text().strip() == "0"
            assert [m.status for _, _, m in got.messages if m.status] == ["one"]
        finally:
            _end(root)

    _serve(scenario)


def test_a_sender_outside_every_tree_is_refused() -> None:
    """1. One instance runs. 2. A process that is not of its tree (started
    beside it, by someone else) sends READY=1 to the same socket.
    3. Nothing is delivered; the refusal names the stranger's pid."""

    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sleep", "60"], env)
        roots.add(root.pid)
        stranger = subprocess.Popen([PY, SD_NOTIFY, "READY=1"], env=env)
        try:
            await got.until(lambda: bool(got.refusals))
            pid, why = got.refusals[0]
            assert pid == stranger.pid
            assert f"pid {stranger.pid}" in why and "belongs to no instance" in why
            assert got.messages == []
            assert server.refused >= 1
        finally:
            _end(root, stranger)

    _serve(scenario)


def test_a_descendant_reparented_away_still_belongs_by_its_session() -> None:
    """1. The instance forks a grandchild and its middle process exits, so the
    grandchild is re-parented (to init or a subreaper): its ancestry no longer
    leads to the instance. 2. It stays in the instance's session: accepted."""

    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sh", "-c", f"( sleep 0.3; exec '{PY}' '{SD_NOTIFY}' STATUS=orphan ) & exec sleep 60"], env)
        roots.add(root.pid)
        try:
            await got.until(lambda: bool(got.messages) or bool(got.refusals))
            assert got.refusals == []
            owner, pid, message = got.messages[0]
            assert owner == root.pid and message.status == "orphan"
        finally:
            _end(root)

    _serve(scenario)


def test_an_oversized_datagram_is_refused_whole() -> None:
    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        root = _spawn(["sh", "-c", f"'{PY}' '{SD_NOTIFY}' --size {MAX_DATAGRAM_BYTES + 100}; exec sleep 60"], env)
        roots.add(root.pid)
        try:
            await got.until(lambda: bool(got.refusals))
            assert f"longer than {MAX_DATAGRAM_BYTES} bytes" in got.refusals[0][1]
            assert all(m.status is None for _, _, m in got.messages)
        finally:
            _end(root)

    _serve(scenario)


def test_refusals_are_reported_once_per_sender() -> None:
    async def scenario(server: NotifyServer[int], got: Received, roots: set[int], env: dict[str, str]) -> None:
        stranger = subprocess.Popen([PY, SD_NOTIFY, "--repeat", "0.01", "STATUS=spam"], env=env)
        try:
            await got.until(lambda: server.refused >= 20)
            assert [pid for pid, _ in got.refusals] == [stranger.pid]
        finally:
            _end(stranger)

    _serve(scenario)


# ------------------------------------------------------------------ parse


def test_parse_takes_the_documented_keys_and_nothing_else() -> None:
    message = parse(
        b"READY=1\nSTATUS=serving 8 clients\nWATCHDOG=1\nMAINPID=4242\nEXTEND_TIMEOUT_USEC=5000000\n"
        b"RELOADING=1\nSTOPPING=1\nWATCHDOG_USEC=2000000\nBARRIER=1\nFDSTORE=1\nERRNO=2\nnonsense\n=x"
    )
    assert message == Notification(
        ready=True,
        status="serving 8 clients",
        watchdog="ping",
        watchdog_usec=2_000_000,
        main_pid=4242,
        stopping=True,
        reloading=True,
        extend_timeout_usec=5_000_000,
        barrier=True,
    )
    assert parse(b"WATCHDOG=trigger").watchdog == "trigger"


@pytest.mark.parametrize(
    "datagram",
    [
        b"READY=2",
        b"READY=yes",
        b"WATCHDOG=0",
        b"MAINPID=-1",
        b"MAINPID=1",
        b"MAINPID=abc",
        b"MAINPID=99999999999999999999999",
        b"WATCHDOG_USEC=5",
        b"WATCHDOG_USEC=100000000000000000",
        b"EXTEND_TIMEOUT_USEC=-3",
        b"EXTEND_TIMEOUT_USEC=\xd9\xa3",
        b"STOPPING=true",
        b"",
        b"\n\n\n",
    ],
)
def test_parse_ignores_values_outside_the_documented_ones(datagram: bytes) -> None:
    assert parse(datagram).empty


def test_a_status_is_one_bounded_line_of_text() -> None:
    message = parse(b"STATUS=line one\rline\x1b[31m two\t\xff" + b"y" * 10_000)
    assert message.status is not None
    assert len(message.status) <= MAX_STATUS_CHARS
    assert all(ch.isprintable() for ch in message.status)
    assert message.status.startswith("line one line [31m two \ufffd")


def test_parse_never_raises_on_arbitrary_bytes() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=MAX_DATAGRAM_BYTES))
    def check(data: bytes) -> None:
        parse(data)

    check()


def test_owner_follows_parents_and_sessions() -> None:
    tree = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        children = wait_until(lambda: psutil.Process(tree.pid).children(), what="the shell's child")
        child = children[0].pid  # type: ignore[index]
        assert tree_owner(child, {tree.pid}) == tree.pid
        assert tree_owner(tree.pid, {tree.pid}) == tree.pid
        assert tree_owner(os.getpid(), {tree.pid}) is None
    finally:
        _end(tree)
