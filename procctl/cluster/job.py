"""One attempt of one job on a Dask worker's machine, once it is spawned:
`WorkerJob` (its process group, the signals it is sent, its stop and its
kill, its bytes sent and acknowledged) and `Pump`, which reads its pipes
until it has exited and sends what it wrote back in batches, holding its
output while too much of it is unacknowledged.

Everything here runs on the worker (`cluster.worker` makes both).
"""

from __future__ import annotations

import os
import resource
import secrets
import selectors
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import psutil

from procctl.cluster.wire import BATCH_BYTES, BATCH_S, WINDOW_BYTES, JobSpec, message
from procctl.engine.metrics import RunMeter
from procctl.engine.pipes import read_chunk
from procctl.engine.process import PIPE_DRAIN_GRACE_S
from procctl.engine.tree import ProcessTree, act_on, signal_group

if TYPE_CHECKING:
    from distributed import Worker

    from procctl.config.manifest import Limits

READ_BYTES = 64 * 1024
ACK_WAIT_S = 0.2
"""How often a job whose output waits for an acknowledgement looks again."""


class WorkerJob:
    """One attempt of one job on this worker (what the enforcer holds, too)."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.token = secrets.token_hex(4)
        """Tells this attempt's messages from those of another run of the same task."""
        self.pid = 0
        self.started_at = 0.0
        self.exited = threading.Event()
        self.killed = False
        self.paused = False
        self.sent_bytes = 0
        self.acked_bytes = 0
        self.acked = threading.Event()
        self.cut: str | None = None
        self.why = ""
        self.breach: list[Any] | None = None
        self.meter: RunMeter | None = None
        self.stopped_tree: list[psutil.Process] = []
        """Its descendants when a stop was sent: they die with it, as here
        (those that left its group included)."""

    # --------------------------------------------- what the enforcer asks

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def limits(self) -> Limits:
        return self.spec.limits

    @property
    def child(self) -> WorkerJob | None:
        return self if self.pid else None

    @property
    def running(self) -> bool:
        return bool(self.pid) and not self.exited.is_set()

    # ----------------------------------------------------------- signals

    def signal(self, sig: int, *, tree: bool = False) -> bool:
        """`sig` to its group; with `tree`, to every descendant that left it too."""
        if not self.running:
            return False
        if sig == signal.SIGSTOP:
            self.paused = True
        elif sig == signal.SIGCONT:
            self.paused = False
        sent = signal_group(self.pid, sig)
        if tree:
            act_on(ProcessTree().descendants(self.pid), lambda proc: proc.send_signal(sig))
        return sent

    def stop(self, sig: int) -> bool:
        """A graceful stop: `sig` to its group (and SIGCONT, or a paused
        tree would never act on it); what descends from it now is killed
        when it ends (`reap`)."""
        if not self.running:
            return False
        self.stopped_tree.extend(ProcessTree().descendants(self.pid))
        sent = self.signal(sig)
        self.signal(signal.SIGCONT)
        return sent

    def reap(self) -> None:
        """It has ended: the group it leaves, and the descendants a stop saw, are killed."""
        signal_group(self.pid, signal.SIGKILL)
        act_on(self.stopped_tree, psutil.Process.kill)

    def kill(self) -> None:
        """SIGKILL its group and every descendant that left it, now."""
        if not self.pid or self.killed:
            return
        self.killed = True
        self.acked.set()
        tree = ProcessTree().descendants(self.pid)
        signal_group(self.pid, signal.SIGKILL)
        act_on(tree, psutil.Process.kill)



class Pump:
    """Reads a job's pipes until it has exited and they are drained, and sends
    what it wrote in batches; returns its exit."""

    def __init__(self, worker: Worker, job: WorkerJob, popen: subprocess.Popen[bytes], fds: dict[int, int]) -> None:
        self.worker = worker
        self.job = job
        self.popen = popen
        self.fds = fds
        self.batch: list[list[Any]] = []
        self.batch_bytes = 0
        self.batch_since = 0.0
        self.returncode: int | None = None
        self.usage: resource.struct_rusage | None = None
        self.selector = selectors.DefaultSelector()

    def run(self) -> tuple[int, resource.struct_rusage | None]:
        job, selector = self.job, self.selector
        try:
            pidfd: int | None = os.pidfd_open(job.pid)
        except (AttributeError, OSError):
            pidfd = None
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ, "exit")
        for fd in self.fds:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, "pipe")
        drain_until: float | None = None
        try:
            while self.fds or self.returncode is None:
                now = time.monotonic()
                if drain_until is not None and now >= drain_until:
                    break  # An escaped descendant holds a pipe open for ever.
                if self._held():
                    job.acked.wait(ACK_WAIT_S)
                    job.acked.clear()
                    self._reap_if_gone(pidfd)
                    continue
                timeout = 0.05 if pidfd is None and self.returncode is None else None
                if self.batch:
                    left = self.batch_since + BATCH_S - now
                    timeout = left if timeout is None else min(timeout, left)
                if drain_until is not None:
                    left = drain_until - now
                    timeout = left if timeout is None else min(timeout, left)
                for key, _ in selector.select(None if timeout is None else max(timeout, 0.0)):
                    if key.data == "exit":
                        self._reap(0)
                    else:
                        self._read(key.fd)
                if pidfd is None and self.returncode is None:
                    self._reap(os.WNOHANG)
                if self.returncode is not None and drain_until is None:
                    if pidfd is not None:
                        selector.unregister(pidfd)
                        os.close(pidfd)
                        pidfd = None
                    # What it left in its group would be an orphan (as here).
                    job.reap()
                    drain_until = time.monotonic() + PIPE_DRAIN_GRACE_S
                if self.batch and (self.batch_bytes >= BATCH_BYTES or time.monotonic() - self.batch_since >= BATCH_S):
                    self._send()
        finally:
            for fd in list(self.fds):
                self._close(fd)
            if pidfd is not None:
                os.close(pidfd)
            selector.close()
            if self.returncode is None:
                job.kill()
                self._reap(0)
            job.exited.set()
        self._send()
        assert self.returncode is not None
        return self.returncode, self.usage

    def _held(self) -> bool:
        """Too much of its output is unacknowledged: leave its pipes unread
        (it waits on its writes) — unless it is being killed."""
        job = self.job
        return bool(self.fds) and not job.killed and job.sent_bytes - job.acked_bytes > WINDOW_BYTES

    def _reap_if_gone(self, pidfd: int | None) -> None:
        if self.returncode is None:
            self._reap(os.WNOHANG)

    def _read(self, fd: int) -> None:
        data = read_chunk(fd, READ_BYTES)
        if data is None:
            return
        if not data:
            self._close(fd)
            return
        if not self.batch:
            self.batch_since = time.monotonic()
        self.batch.append([self.fds[fd], data])
        self.batch_bytes += len(data)

    def _close(self, fd: int) -> None:
        if self.fds.pop(fd, None) is not None:
            self.selector.unregister(fd)
            os.close(fd)

    def _send(self) -> None:
        if not self.batch:
            return
        job = self.job
        job.sent_bytes += self.batch_bytes
        self.worker.log_event(job.spec.topic, message("out", job.spec.key, r=job.token, c=self.batch))
        self.batch, self.batch_bytes = [], 0

    def _reap(self, flags: int) -> None:
        if self.returncode is not None:
            return
        try:
            pid, status, usage = os.wait4(self.job.pid, flags)
        except ChildProcessError:
            self.returncode = 255
        else:
            if pid == 0:
                return
            self.returncode = os.waitstatus_to_exitcode(status)
            self.usage = usage
        self.popen.returncode = self.returncode  # Popen must not reap it again.
        self.job.exited.set()

