"""The notification keys as a run hears them, with real senders: MAINPID,
RELOADING, STOPPING, WATCHDOG=trigger, WATCHDOG_USEC; the watchdog pauses
with its process; the environment and descriptors of a run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from conftest import PY, helper

from procctl.config.manifest import ProcessSpec
from procctl.engine.ipc import Ipc

SD_NOTIFY = helper("sd_notify.py")


class Heard:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []
        self.hangs: list[tuple[str, str]] = []
        self.notices: list[tuple[str | None, str, str]] = []

    def status_message(self, target: str, text: str) -> None:
        self.statuses.append((target, text))

    def hung(self, target: str, why: str) -> None:
        self.hangs.append((target, why))

    def notice(self, target: str | None, message: str, level: str) -> None:
        self.notices.append((target, message, level))


def _spec(**fields: object) -> ProcessSpec:
    return ProcessSpec(name="svc", cmd="x", cwd=Path("/"), env={}, depends_on={}, **fields)  # type: ignore[arg-type]


async def _until(condition: Callable[[], object], timeout: float = 20.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), timeout)


def _scenario(body: Callable[[Ipc[str], Heard, dict[str, str]], Awaitable[None]], regions: dict[str, int] | None = None) -> None:
    async def main() -> None:
        heard = Heard()
        ipc: Ipc[str] = Ipc(regions or {}, heard, lambda event: None, interval_s=0.05)
        ipc.open()
        try:
            await body(ipc, heard, {**os.environ, "NOTIFY_SOCKET": ipc.address})
        finally:
            ipc.close()

    asyncio.run(main())


def _spawn(script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)


def _end(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def test_mainpid_reloading_stopping_are_heard_and_a_foreign_mainpid_ignored() -> None:
    async def body(ipc: Ipc[str], heard: Heard, env: dict[str, str]) -> None:
        proc = _spawn(
            f"sleep 60 & '{PY}' '{SD_NOTIFY}' MAINPID=$! RELOADING=1; '{PY}' '{SD_NOTIFY}' READY=1 MAINPID=1234567; "
            f"'{PY}' '{SD_NOTIFY}' STOPPING=1 STATUS=bye; exec sleep 60",
            env,
        )
        ipc.started("svc", proc.pid, _spec())
        try:
            await _until(lambda: heard.statuses)
            messages = [message for _, message, _ in heard.notices]
            assert messages[0].startswith("main pid is ") and messages[0].endswith(" (MAINPID=)")
            assert messages[1:] == [
                "reloading (RELOADING=1)",
                "ignored MAINPID=1234567: not a process of its tree",
                "reloaded (READY=1)",
                "stopping of its own accord (STOPPING=1)",
            ]
            main_pid = ipc.describe("svc")["main_pid"]
            assert main_pid is not None and main_pid != proc.pid
            assert heard.statuses == [("svc", "bye")]
        finally:
            _end(proc)

    _scenario(body)


def test_the_watchdog_fires_once_pauses_with_its_process_and_can_be_retimed_or_triggered() -> None:
    async def body(ipc: Ipc[str], heard: Heard, env: dict[str, str]) -> None:
        # 1. Paused at once: never fires while paused (its process could not feed it).
        paused = _spawn("exec sleep 60", env)
        ipc.started("paused", paused.pid, _spec(watchdog_s=0.2))
        ipc.pause("paused")
        # 2. Never fed: fires, once, with the timeout in its reason. Armed
        #    after `paused` with the same timeout, it would fire after it.
        quiet = _spawn("exec sleep 60", env)
        ipc.started("quiet", quiet.pid, _spec(watchdog_s=0.2))
        # 3. Retimed by the process itself (WATCHDOG_USEC=).
        retimed = _spawn(f"'{PY}' '{SD_NOTIFY}' WATCHDOG_USEC=60000000 WATCHDOG=1; exec sleep 60", env)
        ipc.started("retimed", retimed.pid, _spec(watchdog_s=30))
        # 4. Triggered by the process: fires at once, whatever the timeout.
        trigger = _spawn(f"'{PY}' '{SD_NOTIFY}' WATCHDOG=trigger; exec sleep 60", env)
        ipc.started("trigger", trigger.pid, _spec(watchdog_s=600))
        try:
            await _until(lambda: {target for target, _ in heard.hangs} >= {"quiet", "trigger"})
            await _until(lambda: ipc.describe("retimed")["watchdog_s"] == 60.0)
            assert ("quiet", "watchdog missed: no WATCHDOG=1 within 0.2s") in heard.hangs
            assert ("trigger", "watchdog triggered by the process (WATCHDOG=trigger)") in heard.hangs
            assert not any(target in ("paused", "retimed") for target, _ in heard.hangs)
            # Fired once: a second timeout later (a `late` run armed now fires
            # after it would have), quiet has not fired again.
            late = _spawn("exec sleep 60", env)
            ipc.started("late", late.pid, _spec(watchdog_s=0.2))
            try:
                await _until(lambda: any(target == "late" for target, _ in heard.hangs))
            finally:
                _end(late)
            assert [target for target, _ in heard.hangs].count("quiet") == 1
            # Resumed, the paused one gets a whole timeout again, then fires.
            ipc.resume("paused")
            await _until(lambda: any(target == "paused" for target, _ in heard.hangs))
        finally:
            for proc in (quiet, paused, retimed, trigger):
                _end(proc)

    _scenario(body)


def test_a_run_gets_its_regions_and_watchdog_in_env_and_fds() -> None:
    async def body(ipc: Ipc[str], heard: Heard, env: dict[str, str]) -> None:
        spec = _spec(shared=(("table", "ro"),), watchdog_s=2.5)
        table = ipc.regions.get("table")
        assert ipc.env(spec) == {
            "PROCCTL_SHM_TABLE": f"/proc/self/fd/{table.fd('ro')}",
            "PROCCTL_SHM_TABLE_SIZE": "8192",
            "PROCCTL_SHM_TABLE_MODE": "ro",
            "WATCHDOG_USEC": "2500000",
        }
        assert ipc.fds(spec) == (table.fd("ro"),)
        assert ipc.env(_spec()) == {} and ipc.fds(_spec()) == ()

    _scenario(body, {"table": 8192})


def test_a_flood_of_status_texts_is_published_as_a_few_with_the_latest_last() -> None:
    """A process sends 5000 STATUS= as fast as it can: every one is read (its
    barrier is released), fewer than a fifth become events, and the last event
    and `status` both hold the latest text."""

    async def body(ipc: Ipc[str], heard: Heard, env: dict[str, str]) -> None:
        proc = _spawn(f"'{PY}' '{SD_NOTIFY}' --burst 5000; exec sleep 60", env)
        ipc.started("svc", proc.pid, _spec())
        try:
            await _until(lambda: heard.statuses and heard.statuses[-1] == ("svc", "5000"))
            assert ipc.describe("svc")["status_message"] == "5000"
            assert len(heard.statuses) < 1000
        finally:
            _end(proc)

    _scenario(body)


def test_what_a_run_sent_before_it_ended_counts_and_a_held_back_status_is_published() -> None:
    """1. A process sends STATUS=first, STATUS=last and READY=1 and exits at
    once, without waiting to be read. 2. Before the loop reads the socket,
    the run ends. 3. Its datagrams are read first: both statuses are
    published (the second, held back, at the end), and it was ready."""

    async def body(ipc: Ipc[str], heard: Heard, env: dict[str, str]) -> None:
        script = (
            "import os, socket; a = os.environ['NOTIFY_SOCKET']; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            "[s.sendto(m, chr(0) + a[1:]) for m in (b'STATUS=first', b'STATUS=last', b'READY=1')]"
        )
        proc = subprocess.Popen([PY, "-c", script], env=env, start_new_session=True)
        probe = ipc.started("svc", proc.pid, _spec())
        proc.wait(timeout=60)  # the loop does not turn meanwhile: nothing is read yet
        assert heard.statuses == [] and not probe.passed.is_set()
        ipc.ended("svc")
        assert heard.statuses == [("svc", "first"), ("svc", "last")]
        assert probe.passed.is_set()

    _scenario(body)
