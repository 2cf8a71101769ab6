"""The executor seam: what an instance's runner asks of the child that does
the work, wherever it runs.

`localexec.LocalExecutor` starts `process.Child`: a process of this machine in
its own session. Another executor (a task on a cluster, a fake in the tests)
implements the same two small protocols; the runner knows nothing else of
its child.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from procctl.config.manifest import Limits
    from procctl.engine.logfile import LogFile
    from procctl.engine.terminal import Terminals
    from procctl.engine.outcome import Cut
    from procctl.bus import Flow
    from procctl.engine.tree import ProcessTree

OutputCallback = Callable[[str, str], None]
"""(stream, whole lines) → None; must not block. The lines are text, as
`lines.LineSplitter` cuts and decodes them, each ending in a newline."""
UsageCallback = Callable[[Any], None]
"""What a child measured of its own tree where it runs (a
`proctable.TreeUsage`) → None."""


class SpawnRequest(NamedTuple):
    """What to start, and where its output goes."""

    cmd: str | tuple[str, ...]
    """A string runs through /bin/sh -c; a tuple is exec'd as is."""
    cwd: Path
    env: Mapping[str, str]
    """The child's whole environment."""
    log: LogFile
    """Every byte the child writes goes here first, as written."""
    on_output: OutputCallback
    limits: Limits
    """Kernel rlimits, set before the command runs."""
    nice: int | None = None
    join_fds: tuple[int, ...] = ()
    """`cgroup.procs` files the child joins before it runs (local children
    only; the caller closes them once `start` returned)."""
    pass_fds: tuple[int, ...] = ()
    """Descriptors the child inherits under the same numbers (its shared
    regions; local children only)."""
    flow: Flow | None = None
    """While held, the child's output waits (a sink cannot keep up)."""
    terminals: Terminals | None = None
    """Run it on a pseudo-terminal of its own, made by these, of procctl's
    terminal's size (`tty = true`; local children only)."""
    on_usage: UsageCallback | None = None
    """Where a child that runs elsewhere reports its tree's usage (a local
    one is sampled here)."""


class Breach(NamedTuple):
    """A limit that was held where the child ran, and ended it."""

    limit: str
    value: float
    maximum: float
    mechanism: str


class Exit(NamedTuple):
    """How a child ended."""

    returncode: int
    """The exit code, or -N for signal N (as subprocess reports it)."""
    usage: resource.struct_rusage | None
    """CPU time of the child and of every descendant it waited for; None
    when the executor cannot tell."""
    ended_at: float
    """Epoch seconds of its end."""
    elapsed_s: float = 0.0
    """Wall seconds from just before the spawn to the moment its exit was
    seen (a monotonic clock: what a benchmark times)."""
    cut: Cut | None = None
    """Why the run was ended where it ran, when something there ended it (a
    limit its worker held, the loss of its worker); the runner's own cut
    comes first."""
    why: str = ""
    """The reason that goes with `cut`."""
    breach: Breach | None = None
    """The limit, when `cut` is a limit."""


class ChildProcess(Protocol):
    """One run of one command."""

    pid: int
    """Its process id (also its process group's); 0 until started."""
    started_at: float
    """Epoch seconds of its start."""

    @property
    def running(self) -> bool: ...

    async def start(self) -> int:
        """Start it; return its pid. Raises SpawnError when it cannot start."""
        ...

    async def wait(self) -> Exit:
        """Wait for its end and for its last output to reach the log."""
        ...

    async def stop(self, stop_signal: int, timeout_s: float, known: ProcessTree | None = None) -> bool:
        """`stop_signal` to the whole tree, SIGKILL after `timeout_s`. True
        when SIGKILL had to end it."""
        ...

    def kill(self, known: ProcessTree | None = None) -> None:
        """SIGKILL the whole tree now."""
        ...

    def send_signal(self, sig: int) -> bool:
        """Deliver `sig` to its process group; False when it is gone."""
        ...

    def suspend(self, known: ProcessTree | None = None) -> None:
        """Stop the whole tree (pause)."""
        ...

    def resume(self, known: ProcessTree | None = None) -> None:
        """Continue the whole tree."""
        ...

    def write_stdin(self, data: bytes) -> bool: ...


class Executor(AbstractContextManager["Executor"], Protocol):
    """Starts the children of one supervisor's run. Entered for the whole run
    (the local one holds the guardian that ends every child if procctl dies)."""

    @property
    def remote(self) -> bool:
        """Its children run on other machines' processes: their pids mean
        nothing here, they measure their own trees (`on_usage`), and their
        limits are held where they run."""
        ...

    @property
    def env(self) -> Mapping[str, str]:
        """The environment every child starts from (the job adds its own)."""
        ...

    @property
    def companions(self) -> tuple[int, ...]:
        """Pids of the executor's own helper processes (they share the
        supervisor's cgroup)."""
        ...

    def child(self, request: SpawnRequest) -> ChildProcess:
        """A child for `request`, not started yet."""
        ...

    def settle(self) -> None:
        """Wait for what its exit left going (the local one's move out of the
        run's cgroup); called once the rest of the run's end is done."""
        ...
