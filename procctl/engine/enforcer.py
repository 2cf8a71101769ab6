"""Keeps each run within its `memory` and `cpu_percent` limits: in the kernel
through a cgroup where the host allows one, else with the memory watchdog on
the metrics samples and the SIGSTOP/SIGCONT duty cycle. Breaches go to the
supervisor, which applies `on_limit`.

(The kernel rlimits need no keeper: they are set before exec, see `limits`.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from procctl import events
from procctl.engine import limits
from procctl.engine.cgroups import Group, Host
from procctl.engine.limits import CpuThrottle
from procctl.units import format_size

if TYPE_CHECKING:
    from procctl.engine.run import Instance

CONTROLLER = {"memory": "memory", "cpu_percent": "cpu"}
"""Limit → the cgroup controller that enforces it."""


BreachHandler = Callable[["Instance", str, float, float, str, str], None]
"""(instance, limit, measured, maximum, mechanism, reason)."""


class Enforcement:
    """How an instance's current run is held to its limits. (A plain class:
    a dataclass compiles its methods at every start.)"""

    __slots__ = ("group", "by_cgroup", "oom_kills", "throttle")

    def __init__(self) -> None:
        self.group: Group | None = None
        """The instance's cgroup, kept across its runs."""
        self.by_cgroup: set[str] = set()
        """Limits the kernel enforces for this run through the group."""
        self.oom_kills = 0
        """The group's OOM kill count when this run started."""
        self.throttle: CpuThrottle | None = None


class Enforcer:
    def __init__(self, metrics_interval_s: float, on_breach: BreachHandler, on_notice: Callable[[Instance, str], None]) -> None:
        self.metrics_interval_s = metrics_interval_s
        self._on_breach = on_breach
        self._on_notice = on_notice
        self._held: dict[str, Enforcement] = {}
        """Per instance name; its group outlives each run."""
        self._host: Host | None = None
        self._looked = False
        self._companions: tuple[int, ...] = ()

    def open(self, companions: tuple[int, ...]) -> None:
        """The run begins; `companions` are the supervisor's helper processes
        (they share its cgroup, and move with it where v2 requires)."""
        self._companions = companions

    def _cgroups(self) -> Host | None:
        """This supervisor's cgroups, made when a run first needs them (most
        manifests set no memory or CPU limit, and then none are made)."""
        if not self._looked:
            self._looked = True
            self._host = Host.create(companions=self._companions)
        return self._host

    def close(self) -> None:
        if self._host is not None:
            self._host.close()

    # ------------------------------------------------------------- one run

    def _enforcement(self, inst: Instance) -> Enforcement:
        run = self._held.get(inst.name)
        if run is None:
            run = self._held[inst.name] = Enforcement()
        return run

    def join_fds(self, inst: Instance) -> list[int]:
        """Before a spawn: make the instance's cgroup ready for the limits in
        force and return the descriptors its child joins through (the caller
        closes them). Empty when no limit of the run can go to a cgroup."""
        run = self._enforcement(inst)
        run.by_cgroup = set()
        wanted = {key for key in CONTROLLER if getattr(inst.limits, key) is not None}
        host = self._cgroups() if wanted else None
        if host is None:
            return []
        wanted = {key for key in wanted if CONTROLLER[key] in host.controllers}
        if not wanted:
            return []
        controllers = {CONTROLLER[key] for key in wanted}
        try:
            if run.group is None or not all(run.group.has(c) for c in controllers):
                if run.group is not None:
                    run.group.remove()
                run.group = host.group(inst.name, controllers)
            group = run.group
            if group.has("memory"):
                group.set_memory(inst.limits.memory if "memory" in wanted else None)
            if group.has("cpu"):
                group.set_cpu(inst.limits.cpu_percent if "cpu_percent" in wanted else None)
            fds = group.open_procs()
        except OSError as exc:
            self._on_notice(inst, f"cgroup refused ({exc.strerror or exc}); falling back to the watchdog and the duty cycle")
            return []
        run.by_cgroup = wanted
        run.oom_kills = group.oom_kills() if group.has("memory") else 0
        return fds

    def forget(self, inst: Instance) -> None:
        """The instance is gone for good (a big pool's, ended): its group too."""
        run = self._held.pop(inst.name, None)
        if run is not None:
            if run.throttle is not None:
                run.throttle.stop()
            if run.group is not None:
                run.group.remove()

    def stopping(self, inst: Instance) -> None:
        """The run is being stopped: end the duty cycle, or the tree would sit
        stopped through its stop signal."""
        run = self._enforcement(inst)
        if run.throttle is not None:
            run.throttle.stop()
            run.throttle = None

    def ended(self, inst: Instance) -> None:
        """After the run's process exited: stop the throttle, and see whether
        the kernel ended the tree for its memory."""
        self.stopping(inst)
        self._check_oom(inst)

    def sampled(self, inst: Instance, sample: events.Sample) -> None:
        """Each sample of a running tree: the watchdog where the kernel does
        not enforce `memory`, else a look at the group's OOM kills (the
        kernel may have ended a process other than the root)."""
        maximum = inst.limits.memory
        if maximum is None or inst.paused or sample.final:
            return
        if "memory" in self._enforcement(inst).by_cgroup:
            self._check_oom(inst)
        elif sample.rss_bytes > maximum:
            self._breach(inst, "memory", sample.rss_bytes, maximum)

    def _check_oom(self, inst: Instance) -> None:
        run = self._enforcement(inst)
        if "memory" not in run.by_cgroup or run.group is None or inst.limits.memory is None:
            return
        kills = run.group.oom_kills() - run.oom_kills
        if kills > 0:
            peak, maximum = run.group.peak_memory(), inst.limits.memory
            processes = "1 process" if kills == 1 else f"{kills} processes"
            reason = f"memory {format_size(peak)} reached the {format_size(maximum)} limit ({run.group.label}: the kernel ended {processes})"
            self._on_breach(inst, "memory", peak, maximum, run.group.label, reason)

    def _breach(self, inst: Instance, limit: str, value: float, maximum: float) -> None:
        self._on_breach(inst, limit, value, maximum, "watchdog", f"{limit} {format_size(value)} > {format_size(maximum)}")

    # ------------------------------------------------------ live changes

    def apply(self, inst: Instance, changed: Collection[str] = ()) -> None:
        """Bring the running tree in line with the limits in force now (after
        its start, or after `procctl limits` changed `changed`)."""
        child = inst.child
        if child is None or not child.running:
            return
        run = self._enforcement(inst)
        if "memory" in changed:
            self._apply_memory(inst)
        percent = inst.limits.cpu_percent
        if "cpu_percent" in run.by_cgroup and "cpu_percent" in changed:
            # (At a start, join_fds has written the quota already.)
            self._write(inst, "cpu_percent", lambda group: group.set_cpu(percent))
        if "cpu_percent" in run.by_cgroup:
            return
        if run.throttle is not None and percent is None:
            run.throttle.stop()
            run.throttle = None
        elif percent is not None:
            if run.throttle is None:
                run.throttle = CpuThrottle(child.pid, percent, lambda: inst.paused)
                run.throttle.start()
            run.throttle.percent = percent

    def _apply_memory(self, inst: Instance) -> None:
        child, maximum = inst.child, inst.limits.memory
        assert child is not None
        if maximum is not None:
            rss = limits.tree_rss(child.pid)
            if rss > maximum:
                # Below what the tree holds already: on_limit, at once.
                self._breach(inst, "memory", rss, maximum)
                return
        if "memory" in self._enforcement(inst).by_cgroup:
            self._write(inst, "memory", lambda group: group.set_memory(maximum))

    def _write(self, inst: Instance, key: str, change: Callable[[Group], None]) -> None:
        run = self._enforcement(inst)
        assert run.group is not None
        try:
            change(run.group)
        except OSError as exc:
            run.by_cgroup.discard(key)
            self._on_notice(inst, f"cgroup refused the new {key} ({exc.strerror or exc}); the rest of this run uses the fallback")

    # ----------------------------------------------------------- reports

    def mechanism(self, inst: Instance, key: str) -> str:
        """A short name of what enforces `key` for the instance's run."""
        run = self._enforcement(inst)
        if key in run.by_cgroup and run.group is not None:
            return run.group.label
        return {"memory": "watchdog", "cpu_percent": "duty-cycle"}.get(key, "rlimit")

    def describe(self, inst: Instance, key: str) -> str:
        """What enforces `key`, in a sentence for `procctl limits`."""
        name = self.mechanism(inst, key)
        if name.startswith("cgroup"):
            files = {
                ("memory", "cgroup v2"): "memory.max, no swap",
                ("memory", "cgroup v1"): "memory.limit_in_bytes, no swap",
                ("cpu_percent", "cgroup v2"): "cpu.max",
                ("cpu_percent", "cgroup v1"): "cpu.cfs_quota_us",
            }
            return f"{name} {files[(key, name)]} of the whole tree (kernel)"
        if key == "memory":
            return f"watchdog on the tree's RSS every {self.metrics_interval_s:g}s"
        if key == "cpu_percent":
            return "SIGSTOP/SIGCONT duty cycle of the process group"
        return "rlimit, set before exec (per process, inherited)"


def close_fds(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
