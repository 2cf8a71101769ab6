"""The local executor's hold on the run (its guardian and its cgroup), made
on a thread of its own while `procctl run` imports the rest of the engine.

Moving the supervisor into the run's cgroup is one write to `cgroup.procs`,
which waits in the kernel for the migration (9–23 ms measured here); the
guardian is a Python started with -I -S. Both used to happen after every
import, on the way to the first spawn. Begun once the manifest is read and
the supervisor's lock held, they overlap the ~40 ms of imports that follow
(the write releases the GIL). The order is the executor's own: the guardian
first, outside the group, then the move. `LocalExecutor` takes what was made
(or raises what failed) when the run enters it; a run that ends before that
abandons it, which undoes both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from procctl.engine.guardian import Guardian
    from procctl.engine.rungroup import RunGroup


class HeadStart:
    def __init__(self) -> None:
        self.on_notice: Callable[[str, str], None] | None = None
        """Told what the guardian tells (set by the executor that takes it)."""
        self._guardian: Guardian | None = None
        self._group: RunGroup | None = None
        self._failed: BaseException | None = None
        self._taken = False
        # Imported here, on the calling thread: the thread below imports
        # nothing, so that it never races the caller's imports for a module.
        from procctl.engine.guardian import Guardian
        from procctl.engine.rungroup import RunGroup

        self._thread = threading.Thread(target=self._make, args=(Guardian, RunGroup), name="procctl-head-start", daemon=True)
        self._thread.start()

    def _make(self, guardian: type[Guardian], group: type[RunGroup]) -> None:
        try:
            self._guardian = guardian(self._notice)
            self._group = group.enter()
        except BaseException as exc:  # (raised again where the executor takes it)
            self._failed = exc

    def _notice(self, message: str, level: str) -> None:
        if self.on_notice is not None:
            self.on_notice(message, level)

    def take(self, on_notice: Callable[[str, str], None] | None) -> tuple[Guardian, RunGroup | None]:
        """The guardian and the run's group (None where no group can be
        made), once made; what made them fail is raised here."""
        self._thread.join()
        self._taken = True
        self.on_notice = on_notice
        if self._failed is not None:
            self._undo()
            raise self._failed
        assert self._guardian is not None
        return self._guardian, self._group

    def abandon(self) -> None:
        """The run ended before an executor took them: undo both (the
        supervisor back in its own group, the guardian ended)."""
        if self._taken:
            return
        self._thread.join()
        self._taken = True
        self._undo()

    def _undo(self) -> None:
        group, self._group = self._group, None
        guardian, self._guardian = self._guardian, None
        if group is not None:
            group.leave(spare=(guardian.pid,) if guardian is not None else ())
        if guardian is not None:
            guardian.close()
