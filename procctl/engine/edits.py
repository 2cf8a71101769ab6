"""What a running supervisor does when its manifest or a watched file
changes: `reload` (the control verb, and SIGHUP to a detached supervisor)
reads the edited manifest and applies its plan (`engine/reload.py`); the
watches (`engine/watcher.py`) restart a process whose files changed.

`Edits` is the supervisor's for a run; it is what a reload is applied to
(`reload.Target`), and it reaches the instances through the supervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from procctl import events
from procctl.bus import Bus
from procctl.engine.watcher import Watches
from procctl.errors import ProcctlError, UsageError

if TYPE_CHECKING:
    from procctl.config.plan import Job, Plan
    from procctl.engine.reload import ReloadPlan
    from procctl.engine.admission import Admission
    from procctl.engine.instances import Instances
    from procctl.engine.ipc import Ipc
    from procctl.engine.runner import InstanceRunner


class Running(Protocol):
    """What an edit needs of the supervisor (`Supervisor` is the one)."""

    bus: Bus
    plan: Plan
    fail_fast: bool
    admission: Admission
    ipc: Ipc[InstanceRunner]
    instances: Instances

    @property
    def stopping(self) -> bool: ...

    def add(self, job: Job) -> InstanceRunner: ...


class Edits:
    def __init__(self, supervisor: Running, edited_plan: Callable[[], Plan] | None, *, fail_fast_given: bool | None, watch: bool) -> None:
        self._sup = supervisor
        self.bus = supervisor.bus
        self._edited_plan = edited_plan
        """Reads the manifest again, as this run read it (the same processes
        picked, the same -j): what `reload` applies. None: no reload."""
        self._fail_fast_given = fail_fast_given
        self.watches: Watches | None = Watches(self.bus, supervisor.instances.live, lambda: supervisor.stopping) if watch else None
        """What restarts a process when its files change (None: --no-watch)."""

    # ----------------------------------------------------------------- watch

    def open_watches(self) -> None:
        processes = self._sup.plan.manifest.processes.values()
        if self.watches is not None:
            self.watches.apply(processes)
            return
        watched = [spec.name for spec in processes if spec.watch is not None]
        if watched:
            self.bus.publish(events.Notice("procctl", "procctl", message=f"watch is off for this run (--no-watch): {', '.join(watched)}"))

    def close_watches(self) -> None:
        if self.watches is not None:
            self.watches.close()

    # ---------------------------------------------------------------- reload

    def reload(self, *, dry_run: bool = False) -> ReloadPlan:
        """Read the edited manifest and apply it (`engine.reload`): what is
        new starts, what is gone stops, what changed restarts, the rest runs
        on. An invalid manifest raises (ManifestError, UsageError) before
        anything is touched. With `dry_run`, only the plan."""
        # (Imported here: a run that is never reloaded need not pay for it at its start.)
        from procctl.engine.reload import Current, plan_reload
        from procctl.engine.reload import apply as apply_reload

        sup = self._sup
        if self._edited_plan is None:
            raise UsageError("this supervisor has no manifest to read again")
        if sup.stopping:
            raise UsageError("the supervisor is stopping")
        edited = self._edited_plan()
        current = {
            process: [Current(runner.name, runner.job, runner.state.final) for runner in runners if not runner.retired]
            for process, runners in sup.instances.by_process.items()
        }
        plan = plan_reload(sup.plan, current, edited)
        if not dry_run:
            apply_reload(self, plan)
        return plan

    def reload_on_hangup(self) -> None:
        """SIGHUP to a detached supervisor: a reload, as nginx and supervisord
        take it. No one waits for a reply, so its outcome goes to the run's
        output (`supervisor.log`) and events: what changed, or why the edited
        manifest was refused (then nothing changed)."""
        try:
            plan = self.reload()
        except ProcctlError as exc:
            self.bus.publish(events.Notice("procctl", "procctl", message=f"reload (SIGHUP) refused, nothing changed: {exc}", level="error"))
            return
        changed = [step.process for step in plan.steps if step.action != "unchanged"]
        done = f"{len(changed)} process{'es' if len(changed) != 1 else ''} changed ({', '.join(changed)})" if changed else "nothing changed"
        self.bus.publish(events.Notice("procctl", "procctl", message=f"reload (SIGHUP): {done}"))

    # ------------------------------------------- what applying a reload asks

    def instance(self, name: str) -> InstanceRunner:
        return self._sup.instances.by_name[name]

    def add(self, job: Job) -> InstanceRunner:
        return self._sup.add(job)

    def forget_process(self, process: str) -> None:
        self._sup.instances.forget_process(process)

    def replan(self, reload: ReloadPlan) -> None:
        sup = self._sup
        plan = reload.plan
        sup.plan = plan
        if self._fail_fast_given is None:
            sup.fail_fast = plan.manifest.settings.fail_fast
        sup.admission.replan(plan)
        sup.ipc.add_regions({name: region.size_bytes for name, region in plan.manifest.shared.items()})
        if self.watches is not None:
            self.watches.apply(plan.manifest.processes.values())
