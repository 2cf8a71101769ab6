"""Shared fixtures: a tmp project, the real `procctl` as a subprocess, a poller,
and a reaper that ends every process a test started, even when it fails."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

HELPERS = Path(__file__).parent / "helpers"
MARKER = "PROCCTL_TEST_MARKER"


def wait_until(condition: Callable[[], object], timeout: float = 15.0, interval: float = 0.02, what: str = "condition") -> object:
    """Poll `condition` until it is truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def marked_pids(marker: str) -> list[int]:
    """Every process whose environment carries this test's marker."""
    needle = f"\0{MARKER}={marker}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if alive(pid)]


def _default_sigint() -> None:
    """In a child: SIGINT back to its default. A suite started in the
    background of a shell without job control inherits it ignored, and
    Python then installs no KeyboardInterrupt handler: a test's Ctrl-C would
    go unheard."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _inheriting(ignored: tuple[int, ...], blocked: tuple[int, ...]) -> None:
    """In a child: SIGINT back to its default, then `ignored` ignored and
    `blocked` blocked, as a parent may leave them across an exec."""
    _default_sigint()
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)


def started(status: dict[str, Any] | None) -> bool:
    """The supervisor answers (`status --json`) and no instance is between its
    pool slot and its spawn: spawns run on threads, so the first answer may
    come while some are still being made ("starting")."""
    return status is not None and not any(row["state"] == "starting" for row in status["instances"])


class Project:
    """A tmp directory with a manifest, and ways to run procctl in it."""

    def __init__(self, root: Path, marker: str) -> None:
        self.root = root
        self.marker = marker
        self._started: list[subprocess.Popen[bytes]] = []

    @property
    def manifest(self) -> Path:
        return self.root / "procfile.toml"

    @property
    def logs(self) -> Path:
        return self.root / ".procctl" / "logs"

    def write(self, text: str, name: str = "procfile.toml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # What a supervisor tells its children would send every command of a
        # suite run inside one to that supervisor.
        for name in ("PROCCTL_FILE", "PROCCTL_SOCKET", "PROCCTL_MANIFEST", "PROCCTL_PROCESS", "PROCCTL_INSTANCE", "PROCCTL_RUN_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            env.pop(name, None)
        env.update({MARKER: self.marker, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        env.pop("FORCE_COLOR", None)
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        *args: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        input: bytes | None = None,
        ignoring: tuple[int, ...] = (),
        blocking: tuple[int, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m procctl ARGS` to the end; (rc, stdout, stderr).
        `ignoring`: signals it starts with ignored (as `nohup` or a parent's
        `trap '' SIG` would leave them); `blocking`: signals it starts with
        blocked."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "procctl", *args],
            cwd=self.root,
            env=self.env(env),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=functools.partial(_inheriting, ignoring, blocking),
        )
        self._started.append(proc)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"procctl {' '.join(args)} did not finish in {timeout}s\nstdout:\n{out.decode(errors='replace')}\nstderr:\n{err.decode(errors='replace')}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def start(self, *args: str, env: dict[str, str] | None = None, blocking: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
        """Start `python -m procctl ARGS` in the background; output to files
        (`blocking`: as for `run`)."""
        out = open(self.root / f"procctl-{len(self._started)}.out", "wb")
        err = open(self.root / f"procctl-{len(self._started)}.err", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "procctl", *args],
            cwd=self.root,
            env=self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=functools.partial(_inheriting, (), blocking),
        )
        out.close()
        err.close()
        proc.out_path = Path(out.name)  # type: ignore[attr-defined]
        proc.err_path = Path(err.name)  # type: ignore[attr-defined]
        self._started.append(proc)
        return proc

    def status(self) -> dict[str, object] | None:
        """`status --json` of the running supervisor, or None when none answers."""
        import json

        result = self.run("status", "--json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    def supervise(self, *args: str) -> subprocess.Popen[bytes]:
        """`procctl run ARGS` in the background, once its control socket
        answers and the starts it began have spawned."""
        proc = self.start("run", *args)
        wait_until(lambda: started(self.status()) or proc.poll() is not None, what="the supervisor to answer")
        assert proc.poll() is None, proc.err_path.read_text()  # type: ignore[attr-defined]
        return proc

    def log(self, instance: str) -> str:
        """What an instance wrote so far ('' before its log exists)."""
        path = self.logs / f"{instance}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def whole_log(self, instance: str, run: Path | None = None) -> bytes:
        """Everything an instance wrote in a run: its rotated log files, oldest first, then its log."""
        where = run or self.logs
        older = sorted(where.glob(f"{instance}.log.*[0-9]"), key=lambda path: int(path.name.rsplit(".", 1)[1]), reverse=True)
        return b"".join(path.read_bytes() for path in [*older, where / f"{instance}.log"] if path.exists())

    def log_size(self, instance: str) -> int:
        """How much an instance wrote so far in this run: its log and its rotated files."""
        return sum(path.stat().st_size for path in self.logs.glob(f"{instance}.log*") if not path.name.endswith(".idx"))

    def cleanup(self) -> None:
        for proc in self._started:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
        for pid in marked_pids(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path, uuid.uuid4().hex)
    try:
        yield proj
    finally:
        proj.cleanup()


def interrupt(proc: subprocess.Popen[bytes]) -> int:
    """Ctrl-C a supervisor started with `Project.supervise` and wait for its end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


def spans(directory: Path) -> list[tuple[int, int]]:
    """(start, end) of each run that marker.py recorded in `directory`."""
    found = []
    for path in directory.iterdir():
        if not path.name.endswith(".tmp"):
            start, end = path.read_text().split()
            found.append((int(start), int(end)))
    return found


def max_overlap(runs: list[tuple[int, int]]) -> int:
    """The most of `runs` that were running at one moment."""
    points = sorted([(s, 1) for s, _ in runs] + [(e, -1) for _, e in runs])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def helper(name: str) -> str:
    """Path of a helper script, for use in a manifest command."""
    return str(HELPERS / name)


PY = sys.executable
