"""Children die with the supervisor, even when it is SIGKILLed.

A tiny watcher process holds the read end of a pipe from the supervisor. The
supervisor tells it each process group it starts (`+PGID`) and ends (`-PGID`).
When the pipe reaches end-of-file — the supervisor exited, however it died — the
watcher SIGKILLs every group still registered, then every process that still
carries this run's token in its environment (descendants that left their group
or were re-parented to init). PR_SET_PDEATHSIG would reach only direct children,
and only while the thread that forked them lives; this reaches whole trees.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys

TOKEN_VAR = "PROCCTL_RUN"

BATCH_S = 0.005
"""How long the groups started and ended are gathered before the watcher is told."""

_WATCHER = r"""
import os, signal, sys
token = ("%s=" % sys.argv[1] + sys.argv[2]).encode() + b"\0"
me = os.getpid()
groups = set()
for line in sys.stdin.buffer:
    line = line.strip()
    if line[:1] == b"+":
        groups.add(int(line[1:]))
    elif line[:1] == b"-":
        groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
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
    """The supervisor's side of the watcher."""

    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHER, TOKEN_VAR, self.token],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={TOKEN_VAR: ""},
        )
        assert self._proc.stdin is not None
        self._fd = self._proc.stdin.fileno()
        self._pending = bytearray()
        self._flush_scheduled = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _tell(self, message: bytes) -> None:
        # Batched over a few milliseconds: one write (and one wake-up of the
        # watcher, which cost the loop ~0.15 ms each on a busy machine) for
        # all the groups started and ended meanwhile, instead of two per job.
        # Until the write, the token in the environment still marks the new
        # group's processes for the watcher's sweep.
        self._pending += message
        if self._flush_scheduled:
            return
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
            pass

    def watch(self, pgid: int) -> None:
        self._tell(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._tell(b"-%d\n" % pgid)

    def close(self) -> None:
        """The run ended cleanly: let the watcher sweep and exit."""
        if self._pending:
            self._flush()
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
