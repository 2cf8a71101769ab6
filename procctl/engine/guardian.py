"""Children die with the supervisor, even when it is SIGKILLed.

A tiny watcher process holds the read end of a pipe from the supervisor. The
supervisor tells it each process group it starts (`+PGID`) and ends
(`-PGID`), and the run's cgroup (`G PATH`, see `rungroup`). When the pipe
reaches end-of-file — the supervisor exited, however it died — the watcher
SIGKILLs every group still registered, then every process in the run's
cgroup (a process cannot leave it by clearing its environment or calling
setsid), then every process that still carries this run's token in its
environment (the fallback where no cgroup could be made). PR_SET_PDEATHSIG
would reach only direct children, and only while the thread that forked them
lives; this reaches whole trees.

The supervisor watches the watcher in turn (a pidfd on its loop): a guardian
that dies — killed by hand, by the OOM killer — is replaced at once by a new
one that is told everything the old one knew, and the run says so.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio

TOKEN_VAR = "PROCCTL_RUN"

BATCH_S = 0.005
"""How long the groups started and ended are gathered before the watcher is told."""
CLOSE_TIMEOUT_S = 5.0
"""How long a released watcher may take to sweep before it is killed."""

_WATCHER = r"""
import os, signal, sys, time
token = ("%s=" % sys.argv[1] + sys.argv[2]).encode() + b"\0"
me = os.getpid()
groups = set()
cgroups = set()
for line in sys.stdin.buffer:
    line = line.rstrip(b"\n")
    if line[:1] == b"+":
        groups.add(int(line[1:]))
    elif line[:1] == b"-":
        groups.discard(int(line[1:]))
    elif line[:2] == b"G ":
        cgroups.add(line[2:].decode())
    elif line[:2] == b"g ":
        cgroups.discard(line[2:].decode())
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
def members(top):
    found = []
    for where, _, _ in os.walk(top):
        try:
            with open(os.path.join(where, "cgroup.procs")) as f:
                found.extend(int(pid) for pid in f.read().split())
        except (OSError, ValueError):
            pass
    return [pid for pid in found if pid != me]
for top in cgroups:
    for _ in range(50):
        pids = members(top)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == me:
        continue
    try:
        with open("/proc/%s/environ" % entry, "rb") as f:
            env = b"\0" + f.read()
    except OSError:
        continue
    if b"\0" + token in env:
        try:
            os.kill(int(entry), signal.SIGKILL)
        except OSError:
            pass
"""


def sweep(token: str, exclude: int | None = None) -> int:
    """SIGKILL every process whose environment carries this run's token.

    Returns how many were found. Used at the end of a run for descendants that
    escaped both their process group and their parent."""
    needle = f"\0{TOKEN_VAR}={token}\0".encode()
    found = 0
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, exclude):
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = b"\0" + f.read()
        except OSError:
            continue
        if needle in env:
            try:
                os.kill(int(entry), signal.SIGKILL)
                found += 1
            except OSError:
                pass
    return found


class Guardian:
    """The supervisor's side of the watcher. `on_notice(message, level)` is
    told when a watcher died and was replaced."""

    def __init__(self, on_notice: Callable[[str, str], None] | None = None) -> None:
        self.token = f"{os.getpid()}-{os.urandom(6).hex()}"  # (secrets.token_hex(6), without its 2 ms import)
        self._on_notice = on_notice
        self._groups: set[int] = set()
        """Process groups the watcher must kill if we die (for a successor)."""
        self._cgroups: set[str] = set()
        self._pending = bytearray()
        self._flush_scheduled = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pidfd = -1
        self.replaced = 0
        """How many watchers died and were replaced."""
        self._proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHER, TOKEN_VAR, self.token],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={TOKEN_VAR: ""},
        )
        assert proc.stdin is not None
        self._fd = proc.stdin.fileno()
        return proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    # --------------------------------------------------------- its death

    def observe(self) -> None:
        """Watch the watcher from the running loop: if it dies, replace it."""
        # asyncio is imported here, not with the module: a run makes its
        # guardian on a thread begun before asyncio is imported, which
        # overlaps the ~20 ms of that import (engine/headstart.py).
        import asyncio

        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._watch_pid()

    def _watch_pid(self) -> None:
        if self._loop is None:
            return
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):
            self._pidfd = -1
            return
        self._loop.add_reader(self._pidfd, self._died)

    def _unwatch_pid(self) -> None:
        if self._pidfd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _died(self) -> None:
        self._unwatch_pid()
        old = self._proc
        old.wait()
        if old.stdin is not None:
            try:
                old.stdin.close()
            except OSError:
                pass
        if self._closing:
            return
        self.replaced += 1
        self._proc = self._spawn()
        self._pending = bytearray()
        self._flush_scheduled = False
        state = b"".join(b"+%d\n" % pgid for pgid in self._groups) + b"".join(b"G %s\n" % path.encode() for path in self._cgroups)
        self._tell(state)
        self._watch_pid()
        if self._on_notice is not None:
            how = f"signal {-old.returncode}" if old.returncode and old.returncode < 0 else f"code {old.returncode}"
            self._on_notice(
                f"the guardian (pid {old.pid}) died ({how}): started a new one (pid {self._proc.pid}), "
                "which watches every process of the run again",
                "warning",
            )

    # ------------------------------------------------------- what it knows

    def _tell(self, message: bytes) -> None:
        # Batched per turn of the loop: one write (and one wake-up of the
        # watcher) for all the groups started and ended in it, instead of two
        # per job. Until the write, the run's cgroup (or the token in the
        # environment) still marks the new group's processes for the watcher.
        self._pending += message
        if self._flush_scheduled:
            return
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        self._flush_scheduled = True
        loop.call_later(BATCH_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data, self._pending = bytes(self._pending), bytearray()
        if not data:
            return  # (flushed by `close` meanwhile: the pipe may be gone)
        try:
            os.write(self._fd, data)
        except OSError:
            pass  # It died: `_died` replaces it and tells its successor everything.

    def watch(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._tell(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._groups.discard(pgid)
        self._tell(b"-%d\n" % pgid)

    def track(self, cgroup: str) -> None:
        """Kill everything in this cgroup (and below) if we die."""
        self._cgroups.add(cgroup)
        self._tell(f"G {cgroup}\n".encode())

    def untrack(self, cgroup: str) -> None:
        self._cgroups.discard(cgroup)
        self._tell(f"g {cgroup}\n".encode())

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """The run ended cleanly: let the watcher sweep and exit."""
        self.release()
        self.wait(timeout_s)

    def release(self) -> None:
        """Tell the watcher the run ended (what it was last told, then
        end-of-file): it sweeps and exits while the caller goes on. `wait`
        for it before the run may say it ended."""
        self._closing = True
        if self._pidfd >= 0:
            assert self._loop is not None
            self._loop.remove_reader(self._pidfd)  # (the pidfd is kept for `wait`)
        if self._pending:
            self._flush()
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Wait for the released watcher to finish its sweep; kill it after
        `timeout_s`. On its pidfd, which is readable the moment it exits
        (`Popen.wait(timeout)` polls with growing sleeps, and answered ~5 ms
        late at the end of every run)."""
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd < 0:
            try:
                pidfd = os.pidfd_open(self._proc.pid)
            except OSError:  # (ESRCH: already reaped)
                pidfd = -1
        try:
            if pidfd >= 0 and not select.select([pidfd], [], [], timeout_s)[0]:
                self._proc.kill()
            elif pidfd < 0:
                try:
                    self._proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc.wait()
        finally:
            if pidfd >= 0:
                os.close(pidfd)
