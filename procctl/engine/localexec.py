"""The local executor: the run's hold on the children it starts on this
machine (`process.Child`).

For the run it raises the descriptor limit to what the pool needs, starts a
guardian that kills every child if procctl dies however it dies, moves the
supervisor into a cgroup of the run's own (`rungroup`) that its children
cannot leave, and gives them procctl's environment without what a
supervisor of procctl's own told it. At the end it kills what escaped both
its group and its parent.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Callable, Mapping

from procctl.engine import childenv, limits
from procctl.engine.child import SpawnRequest
from procctl.engine.guardian import TOKEN_VAR, Guardian, sweep
from procctl.engine.headstart import HeadStart
from procctl.engine.process import Child
from procctl.engine.rungroup import RunGroup
from procctl.engine.spawner import Spawner


def _raise_fd_limit(concurrency: int) -> None:
    # Each running child costs about six descriptors here (three pipes,
    # a pidfd, its log file); the usual soft limit of 1024 is too few
    # for a large pool. Children inherit the raised soft limit.
    needed = 64 + 8 * concurrency
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class LocalExecutor:
    """Children on this machine (`Child`), held for the run by a cgroup they
    cannot leave (`rungroup`) and by a guardian: if procctl dies, however it
    dies, they die with it. `on_notice(message, level)` hears what the run
    should be told (a guardian replaced, escaped processes killed)."""

    remote = False

    def __init__(
        self,
        concurrency: int = 1,
        spawner: Spawner | None = None,
        on_notice: Callable[[str, str], None] | None = None,
        head_start: HeadStart | None = None,
    ) -> None:
        self._concurrency = concurrency
        """How many children may run at once (the pool's size)."""
        self._spawner = spawner
        """The threads its children are spawned on (None: the loop's)."""
        self._on_notice = on_notice
        self._head_start = head_start
        """The guardian and the group, when `run` began making them early."""
        self._guardian: Guardian | None = None
        self._run_group: RunGroup | None = None
        self._env: dict[str, str] = {}
        self._leaving: threading.Thread | None = None
        self._ending: tuple[Guardian, RunGroup | None] | None = None

    def __enter__(self) -> LocalExecutor:
        _raise_fd_limit(self._concurrency)
        if self._head_start is not None:
            head_start, self._head_start = self._head_start, None
            self._guardian, self._run_group = head_start.take(self._on_notice)
        else:
            # The guardian first, outside the run's group: it must outlive it.
            self._guardian = Guardian(self._on_notice)
            self._run_group = RunGroup.enter()
        self._guardian.observe()
        if self._run_group is not None:
            self._guardian.track(str(self._run_group.path))
        # What procctl itself was told by a supervisor of its own is not passed on.
        stale = childenv.stale()
        self._env = {key: value for key, value in os.environ.items() if key not in stale}
        self._env[TOKEN_VAR] = self._guardian.token
        return self

    def __exit__(self, *exc: object) -> None:
        guardian, self._guardian = self._guardian, None
        run_group, self._run_group = self._run_group, None
        if guardian is None:
            return
        if run_group is not None:
            # Nothing is spawned any more, so this process need not stay in
            # the group: it moves home on a thread of its own (a write the
            # kernel makes wait) while the run ends, and `settle` waits for it.
            self._leaving = threading.Thread(target=run_group.move_home, name="procctl-leave")
            self._leaving.start()
            # Descendants that escaped both their group and their parent.
            escaped = run_group.sweep(spare=(guardian.pid,))
            guardian.untrack(str(run_group.path))
        else:
            escaped = sweep(guardian.token, exclude=guardian.pid)
        # The watcher makes its own last sweep (by the token) meanwhile.
        guardian.release()
        self._ending = (guardian, run_group)
        if escaped and self._on_notice is not None:
            where = "the run's cgroup" if run_group is not None else "the process table (by the run's token)"
            self._on_notice(f"killed {escaped} process(es) still running after every instance ended, found in {where}", "warning")

    def settle(self) -> None:
        """The end of the exit: this process back home, the watcher ended,
        the run's group removed."""
        ending, self._ending = self._ending, None
        if ending is None:
            return
        guardian, run_group = ending
        leaving, self._leaving = self._leaving, None
        if leaving is not None:
            leaving.join()
        # (A guardian started again during the run was started in the
        # group: once ended, it is out of it too.)
        guardian.wait()
        if run_group is not None:
            run_group.remove()

    @property
    def tracking(self) -> str:
        """How the run's processes are tracked: its cgroup, or the token."""
        if self._run_group is not None:
            return self._run_group.label
        return f"the environment token {TOKEN_VAR}"

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    @property
    def companions(self) -> tuple[int, ...]:
        return (self._guardian.pid,) if self._guardian is not None else ()

    def child(self, request: SpawnRequest) -> Child:
        return Child(
            request.cmd,
            cwd=request.cwd,
            env=request.env,
            log=request.log,
            on_output=request.on_output,
            preexec_fn=limits.preexec(request.limits, request.nice, list(request.join_fds)),
            guardian=self._guardian,
            pass_fds=request.pass_fds,
            flow=request.flow,
            terminals=request.terminals,
            spawner=self._spawner,
        )
