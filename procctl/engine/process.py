"""A child on this machine: its own session and process group, output to
its log first (engine/pipes.py). `localexec.LocalExecutor` makes them.

`Child` spawns one run of a job's command; its pipes hand every byte it
writes to the log file before anything else sees it, then complete lines to
a callback. Stopping signals the whole tree, waits for it, and SIGKILLs what
is left. Knows nothing of the pool.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from procctl.engine.lazypsutil import psutil

from procctl.config.command import argv_of
from procctl.engine import forkexec
from procctl.engine.child import Exit, OutputCallback
from procctl.engine.fdwatch import watch_of
from procctl.engine.guardian import Guardian
from procctl.engine.logfile import LogFile
from procctl.engine.pipes import Input, Output
from procctl.engine.terminal import Terminals, take_terminal
from procctl.engine.spawner import Spawner
from procctl.engine.tree import ProcessTree, act_on, group_alive, group_lives, lives, signal_group
from procctl.errors import SpawnError
from procctl.bus import Flow

EXIT_POLL_S = 0.05
"""How often a child's exit is polled where the kernel has no pidfd (< 5.3)."""

PIPE_DRAIN_GRACE_S = 1.0
"""After the child and its group are gone, how long a pipe held open by an
escaped descendant may keep us waiting for its last bytes."""

TREE_POLL_S = 0.05
"""During a stop, how often a group is looked at once its leader has exited
and its pipes are closed, while members that closed their output live on."""


_Spawned = tuple[int, tuple[int, ...], int]
"""A spawned child's pid, our ends of its pipes (stdin, stdout, stderr; none for a
child without output) and its pidfd (-1 where the kernel has none)."""


def _handed_over(spawned: _Spawned, fds: tuple[int, ...]) -> _Spawned:
    """A child spawned apart, with its descriptors' numbers in this table
    (handed over in the order `Child._spawn_apart` gave them)."""
    pid, ours, pidfd = spawned
    return pid, fds[: len(ours)], fds[len(ours)] if pidfd >= 0 else -1


def _abandon(spawned: _Spawned) -> None:
    """A child whose start nobody awaits any more (its runner was
    cancelled): killed with its group and reaped, its descriptors closed."""
    pid, ours, pidfd = spawned
    forkexec.kill_and_reap(pid)
    for fd in (*ours, pidfd):
        if fd >= 0:
            os.close(fd)



def _on_terminal(preexec_fn: Callable[[], None] | None) -> Callable[[], None]:
    """The pre-exec step of a child on a terminal: the terminal becomes its
    controlling one (it runs after setsid), then the rest."""

    def preexec() -> None:
        take_terminal()
        if preexec_fn is not None:
            preexec_fn()

    return preexec



class Child:
    """One run of one command, in its own session: the local `ChildProcess`."""

    def __init__(
        self,
        cmd: str | tuple[str, ...],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: LogFile | None = None,
        on_output: OutputCallback | None = None,
        preexec_fn: Callable[[], None] | None = None,
        guardian: Guardian | None = None,
        pass_fds: tuple[int, ...] = (),
        flow: Flow | None = None,
        terminals: Terminals | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        """Without `on_output` the child's stdin, stdout and stderr are
        /dev/null (a benchmark's run): nothing to read, nothing logged.
        With `terminals`, they are a pseudo-terminal of its own."""
        self.preexec_fn = preexec_fn
        """Runs in the child between fork and exec (rlimits, nice)."""
        self.pass_fds = pass_fds
        """Descriptors the child inherits under the same numbers (shared regions)."""
        self.argv: tuple[str, ...] = argv_of(cmd)
        self.cwd = cwd
        self.env = env
        self._log = log
        self._on_output = on_output
        self._guardian = guardian
        """Told of the child's group while it lives, so that it dies with procctl."""
        self._flow = flow
        """Held while a sink cannot keep up: its pipes then wait."""
        self._terminals = terminals
        self._terminal: int | None = None
        """Its terminal's master side, kept for resizing until it is reaped."""
        self._spawner = spawner
        """Where the fork and exec run; None: on the caller's thread."""
        self._output: Output | None = None
        self._input: Input | None = None
        self._exited: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        """Made when a graceful stop begins, done when it has ended: the
        whole tree gone, or SIGKILLed after the stop timeout."""
        self.pid = 0
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.returncode: int | None = None
        self.usage: resource.struct_rusage | None = None
        """The rusage `wait4` reported when the child was reaped: its CPU
        time and that of every descendant it waited for."""
        self._spawned = 0.0
        self._reaped = 0.0
        """perf_counter just before the spawn and when the exit was seen."""

    async def start(self) -> int:
        """Spawn the child, with plain pipes rather than asyncio's subprocess
        transports: the loop watches the pipes and a pidfd itself, which
        costs a third less CPU per spawn (measured: 2000 × /bin/true at 8 at
        once, 0.73 s → 0.46 s of the supervisor's CPU), and without
        `subprocess.Popen` (engine/forkexec.py). The spawn itself runs on a
        spawner thread when there is one (engine/spawner.py)."""
        loop = asyncio.get_running_loop()
        spawner = self._spawner
        if spawner is not None and not spawner.has_room():
            raise self._spawn_error(OSError(errno.EMFILE, os.strerror(errno.EMFILE)))
        if spawner is None or self._terminals is not None:
            # (A terminal is opened and followed on the loop's thread, which resizes it.)
            pid, ours, pidfd = self._spawn()
        elif spawner.crowded and self.preexec_fn is None and not self.pass_fds:
            # A table of thousands of descriptors would be copied by the fork:
            # spawned apart. The log's file is opened here, in this table (its
            # opener goes through the state directory's descriptors).
            if self._log is not None:
                self._log.open_file()
            try:
                pid, ours, pidfd = await spawner.call_apart(self._spawn_apart, _handed_over, _abandon)
            except OSError as exc:  # (its descriptors found no room in this table)
                raise self._spawn_error(exc) from None
        else:
            pid, ours, pidfd = await spawner.call(self._spawn, _abandon)
        if spawner is not None:
            spawner.saw((*ours, pidfd))
        self.pid = pid
        self.started_at = time.time()
        if self._guardian is not None:
            self._guardian.watch(self.pid)
        self._exited = loop.create_future()
        if self._on_output is not None:
            assert self._log is not None
            # A terminal is one stream: what the child writes to stdout and stderr, in order.
            streams = {ours[1]: 1} if self._terminal is not None else {ours[1]: 1, ours[2]: 2}
            self._output = Output(loop, streams, self._log, self._on_output, self._flow)
            self._input = Input(loop, ours[0])
        self._watch_exit(loop, pidfd)
        return self.pid

    def _spawn(self) -> _Spawned:
        """Fork and exec with its pipes (or its terminal), on whichever thread
        calls it (the loop's or a spawner's); raises SpawnError."""
        if self._log is not None:
            self._log.open_file()  # (at its first start: here, with the spawn)
        return self._fork_exec(keep_error_pipe=True)

    def _spawn_apart(self) -> tuple[_Spawned, tuple[int, ...]]:
        """`_spawn` on a spawner with a table of descriptors of its own (its
        log already open): the child and the descriptors to hand over."""
        spawned = pid, ours, pidfd = self._fork_exec(keep_error_pipe=False)
        return spawned, (*ours, pidfd) if pidfd >= 0 else ours

    def _fork_exec(self, *, keep_error_pipe: bool) -> _Spawned:
        preexec_fn = self.preexec_fn
        if self._on_output is None:
            ours: tuple[int, ...] = ()
            theirs: tuple[int, ...] = (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
        elif self._terminals is not None:
            master, slave = self._terminals.open()
            self._terminal = master
            # Read and written through descriptors of their own: each closes its own.
            ours, theirs = (os.dup(master), os.dup(master)), (slave,)
            preexec_fn = _on_terminal(preexec_fn)
        else:
            # Close-on-exec: a child spawned meanwhile on another thread never holds them.
            made: list[int] = []
            try:
                made += os.pipe2(os.O_CLOEXEC)
                made += os.pipe2(os.O_CLOEXEC)
                made += os.pipe2(os.O_CLOEXEC)
            except OSError as exc:  # (out of descriptors)
                for fd in made:
                    os.close(fd)
                raise self._spawn_error(exc) from None
            stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w = made
            ours, theirs = (stdin_w, stdout_r, stderr_r), (stdin_r, stdout_w, stderr_w)
        standard = theirs * 3 if len(theirs) == 1 else theirs
        self._spawned = time.perf_counter()
        try:
            pid = forkexec.spawn(
                self.argv, cwd=os.fspath(self.cwd), env=self.env, stdin=standard[0], stdout=standard[1], stderr=standard[2],
                pass_fds=self.pass_fds, preexec_fn=preexec_fn, keep_error_pipe=keep_error_pipe,
            )  # fmt: skip
        except BaseException as exc:
            for fd in ours:
                os.close(fd)
            self._release_terminal()
            raise self._spawn_error(exc) from None
        finally:
            if ours:  # (else `theirs` are DEVNULL, not descriptors)
                for fd in theirs:
                    os.close(fd)
        # Our ends stay blocking: a system call each (ioctl), on a spawner thread
        # that may hand the interpreter lock over at each system call, for
        # nothing. Output reads its ends once each time the epoll says they
        # are readable, and nobody else reads them, so a read never waits;
        # Input makes the stdin end non-blocking when it first writes.
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        return pid, ours, pidfd

    def _spawn_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, FileNotFoundError):
            if not self.cwd.is_dir():
                return SpawnError(f"working directory {self.cwd} does not exist")
            return SpawnError(f"command not found: {exc.filename or self.argv[0]}")
        if isinstance(exc, PermissionError):
            return SpawnError(f"cannot execute {exc.filename or self.argv[0]}: permission denied")
        if isinstance(exc, subprocess.SubprocessError):
            # The pre-exec step failed in the child (e.g. a limit above the hard one).
            return SpawnError(f"cannot apply limits to {self.argv[0]}: {exc}")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return SpawnError(f"cannot start {self.argv[0]}: procctl ran out of open files ({exc.strerror}; its limit is {limit}: see ulimit -n)")
        if isinstance(exc, OSError):
            return SpawnError(f"cannot start {self.argv[0]}: {exc.strerror or exc}")
        return exc

    def _watch_exit(self, loop: asyncio.AbstractEventLoop, pidfd: int) -> None:
        if pidfd < 0:
            loop.call_later(EXIT_POLL_S, self._poll_exit, loop)
            return

        watch = watch_of(loop)

        def on_exit(_events: int) -> None:
            watch.remove(pidfd)
            os.close(pidfd)
            self._reap(0)

        watch.add(pidfd, on_exit)

    def _poll_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._reap(os.WNOHANG):
            loop.call_later(EXIT_POLL_S, self._poll_exit, loop)

    def _reap(self, flags: int) -> bool:
        """wait4 the child (keeping its rusage); True once it is reaped."""
        assert self._exited is not None
        if self.returncode is not None:
            return True  # (`reap` was first)
        try:
            pid, status, usage = os.wait4(self.pid, flags)
        except ChildProcessError:
            returncode = 255  # Reaped elsewhere; asyncio reports the same.
        else:
            if pid == 0:
                return False
            returncode = os.waitstatus_to_exitcode(status)
            self.usage = usage
        forkexec.forget(self.pid, returncode)
        self.returncode = returncode
        self._reaped = time.perf_counter()
        self.ended_at = time.time()
        if self._output is not None:
            self._output.drain()
        self._release_terminal()
        if not self._exited.done():
            self._exited.set_result(None)
        return True

    def _release_terminal(self) -> None:
        if self._terminal is not None and self._terminals is not None:
            self._terminals.release(self._terminal)
        self._terminal = None

    @property
    def pgid(self) -> int:
        # start_new_session makes the child the leader of its own group.
        return self.pid

    @property
    def running(self) -> bool:
        return self.returncode is None and self._exited is not None and not self._exited.done()

    def send_signal(self, sig: int) -> bool:
        """Deliver `sig` to the whole group (--signal; SIGSTOP and SIGCONT)."""
        return self.returncode is None and signal_group(self.pgid, sig)

    def suspend(self, known: ProcessTree | None = None) -> None:
        """SIGSTOP to the group, then to every descendant that left it."""
        self.send_signal(signal.SIGSTOP)
        act_on((known or ProcessTree()).descendants(self.pid), psutil.Process.suspend)

    def resume(self, known: ProcessTree | None = None) -> None:
        act_on((known or ProcessTree()).descendants(self.pid), psutil.Process.resume)
        self.send_signal(signal.SIGCONT)

    def write_stdin(self, data: bytes) -> bool:
        if self._input is None or self.returncode is not None:
            return False
        return self._input.write(data)

    async def wait(self) -> Exit:
        """Wait for the child to exit, for its tree to end and for its last
        bytes to reach the log."""
        assert self._exited is not None
        try:
            await self._exited
            if self._stopped is not None:
                # A graceful stop waits for the whole tree, not the leader alone.
                await asyncio.shield(self._stopped)
            elif group_alive(self.pgid):
                # The leader ended on its own: what it left in its group would be orphans.
                signal_group(self.pgid, signal.SIGKILL)
            if self._output is not None and not self._output.closed.done():
                # (Closed already, its last bytes are handed on: no turn of
                # the loop to wait. What a run said just before its exit
                # counts however late it is read: see RunWatch's readiness.)
                try:
                    await asyncio.wait_for(asyncio.shield(self._output.closed), PIPE_DRAIN_GRACE_S)
                except TimeoutError:
                    pass
        finally:
            if self._guardian is not None:
                self._guardian.forget(self.pgid)
        if self._output is not None and self._input is not None:
            self._output.close()
            self._input.close()
        assert self.returncode is not None
        return Exit(self.returncode, self.usage, self.ended_at or time.time(), self._reaped - self._spawned)

    def reap(self) -> None:
        """SIGKILL the group and reap the child now, waiting for it (for a
        caller that can no longer await: a cancelled benchmark run)."""
        if self.returncode is None and self.pid:
            signal_group(self.pgid, signal.SIGKILL)
            self._reap(0)

    async def stop(self, stop_signal: int, timeout_s: float, known: ProcessTree | None = None) -> bool:
        """Graceful stop of the whole tree: `stop_signal` to the group, then
        wait until every process of the tree has exited — the leader, what is
        left in its group, and the descendants that left it (found in `known`,
        when the caller took one for many stops) — or `timeout_s` has passed,
        and SIGKILL what is left. True when something was still alive for
        SIGKILL."""
        if self._exited is None or self._exited.done():
            return False
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return False
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            tree = (known or ProcessTree()).descendants(self.pid)
            signal_group(self.pgid, stop_signal)
            # A stopped (paused) group would never act on the signal.
            signal_group(self.pgid, signal.SIGCONT)
            # Descendants that left the group are part of the tree all the same.
            act_on(self._escaped(tree), lambda proc: proc.send_signal(stop_signal))
            killed_hard = False
            try:
                await asyncio.wait_for(self._tree_ended(tree), timeout_s)
            except TimeoutError:
                killed_hard = self._tree_lives(tree)
            self._kill(tree)
        finally:
            self._stopped.set_result(None)
        return killed_hard

    async def _tree_ended(self, tree: list[psutil.Process]) -> None:
        assert self._exited is not None
        # The leader's exit and the close of its pipes by every holder are
        # events; only members that closed their output need looking at.
        await asyncio.shield(self._exited)
        if self._output is not None:
            # A process outside the tree (one that escaped its parent and its
            # group) may hold the pipe for ever: the tree is looked at after a
            # grace, not after the stop's whole timeout.
            try:
                await asyncio.wait_for(asyncio.shield(self._output.closed), PIPE_DRAIN_GRACE_S)
            except TimeoutError:
                pass
        while self._tree_lives(tree):
            await asyncio.sleep(TREE_POLL_S)

    def _escaped(self, tree: list[psutil.Process]) -> list[psutil.Process]:
        """The members of `tree` in a process group of their own."""
        escaped = []
        for proc in tree:
            try:
                if os.getpgid(proc.pid) != self.pgid:
                    escaped.append(proc)
            except OSError:
                pass
        return escaped

    def _tree_lives(self, tree: list[psutil.Process]) -> bool:
        return group_lives(self.pgid) or any(lives(proc) for proc in tree)

    def kill(self, known: ProcessTree | None = None) -> None:
        """SIGKILL the group and its descendants at once (second Ctrl-C)."""
        if self.pid:
            self._kill((known or ProcessTree()).descendants(self.pid))

    def _kill(self, tree: list[psutil.Process]) -> None:
        signal_group(self.pgid, signal.SIGKILL)
        act_on(tree, psutil.Process.kill)

