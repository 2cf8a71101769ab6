"""What an instance's runner needs of its supervisor: the dependency gate,
a pool slot, the executor, its log, its environment, metrics and limits.

`Supervisor` is the one `Host`; a test may stand in its own. The runner is
seen here as an `Instance` (`engine/run.py`), so this module does not
import the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from procctl.bus import Bus

if TYPE_CHECKING:
    from procctl.config.plan import Job
    from procctl.engine.child import Executor
    from procctl.engine.enforcer import Enforcer
    from procctl.engine.ipc import Ipc
    from procctl.engine.logfile import LogFile
    from procctl.engine.metrics import Recorder
    from procctl.engine.run import Instance
    from procctl.engine.terminal import Terminals


class Host(Protocol):
    """What a runner needs of its supervisor."""

    bus: Bus
    recorder: Recorder
    enforcer: Enforcer
    ipc: Ipc[Instance]
    """Its notifications, its watchdog, its shared regions."""
    terminals: Terminals
    """Where a `tty = true` run gets its pseudo-terminal."""

    @property
    def stopping(self) -> bool:
        """The whole run is stopping: nothing starts again."""
        ...

    def launch(self, runner: Instance) -> None:
        """Begin the runner's life (it calls this itself for `start`)."""
        ...

    async def dependencies(self, runner: Instance) -> str:
        """Wait until its dependencies hold: '' then, else why they never will."""
        ...

    async def slot(self, runner: Instance) -> int:
        """Wait for a pool slot; its ticket."""
        ...

    def release(self, ticket: int) -> None: ...

    def executor_for(self, job: Job) -> Executor:
        """Where runs of `job` happen (its process's `executor`)."""
        ...

    def env(self, job: Job) -> dict[str, str]:
        """The whole environment of a run of `job`."""
        ...

    def stop_timeout_s(self, job: Job) -> float: ...

    def open_log(self, job: Job, *, truncate: bool) -> LogFile:
        """The writer of the job's log (and its time index), rotating as its
        process says; its file is made with the first byte, or opened by
        `LogFile.open_file` (which raises SpawnError) with the spawn when it
        is there already."""
        ...

    def changed(self) -> None:
        """Some instance's state changed (the dependency gate looks again)."""
        ...

    def ended(self, runner: Instance) -> None:
        """The runner reached a final state."""
        ...
