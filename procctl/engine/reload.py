"""What a reload does: the edited manifest's plan against what runs now.

Pure: `plan_reload` compares each process's definition in the running plan
with the edited one, and each instance that runs now with the job the edited
definition makes of it, and returns the steps — start, stop, restart, keep —
without touching anything. The supervisor applies them (`Supervisor.reload`);
`procctl reload --dry-run` only prints them.

The rules, as `supervisorctl update` and `docker compose up` have them:

- A process that is new starts; one that is gone stops gracefully.
- A process whose definition changed restarts, every instance of it (one
  that had ended starts again). What counts is everything that shapes a run:
  cmd, cwd, env (its own, the env file's contents, `[env]`), probes, limits,
  restart policy, stop signal and timeouts, shared regions, notify settings,
  `tty`, log rotation. Not counted: `replicas` (instances are added or
  stopped, the others keep running), `each` items (new items start, removed
  ones stop), `depends_on` (as compose leaves a service alone when only its
  dependencies changed) and `watch` (the watch is renewed, the process kept).
- A changed process's dependents keep running (neither supervisord nor
  compose restarts them by default). A dependent that starts or restarts
  afterwards waits for the restarted dependency to hold its condition again.
- A process unchanged keeps its instances, their pids and their counts. So
  does a count set at run time by `procctl scale`, unless `replicas` itself
  was edited.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from procctl import events
from procctl.bus import Bus
from procctl.config.manifest import Manifest, ProcessSpec
from procctl.config.plan import Job, Plan, check_ports, job_like, lowest_free, replica_job

if TYPE_CHECKING:
    from procctl.engine.runner import InstanceRunner

NOT_RESTARTING = frozenset({"name", "line", "replicas", "each", "depends_on", "watch"})
"""Fields of a process whose change alone restarts nothing."""

_KEYS = {"backoff_s": "backoff", "timeout_s": "timeout", "stop_timeout_s": "stop_timeout", "watchdog_s": "watchdog", "min_uptime_s": "min_uptime"}
"""Field names that the manifest spells otherwise."""

SETTINGS_APPLIED = ("max_parallel", "stop_timeout", "fail_fast")
"""[settings] a running supervisor takes from an edited manifest; the rest
reach the processes through their definitions (limits, on_limit, nice,
env_file, pool) or wait for the next run."""


@dataclasses.dataclass(frozen=True)
class Current:
    """An instance that runs now (or has run), as the reload sees it."""

    name: str
    job: Job
    ended: bool


@dataclasses.dataclass
class ProcessStep:
    """What a reload does to one process."""

    process: str
    action: str
    """added, removed, restarted, scaled, updated (a change that restarts
    nothing: depends_on, watch) or unchanged."""
    changes: list[str] = dataclasses.field(default_factory=list)
    """The keys whose change this is (`cmd`, `env`, `replicas`…)."""
    start: list[Job] = dataclasses.field(default_factory=list)
    """New instances."""
    stop: list[str] = dataclasses.field(default_factory=list)
    """Instances dropped for good (removed, scaled down, an item gone):
    stopped if they run, forgotten either way."""
    restart: list[tuple[str, Job]] = dataclasses.field(default_factory=list)
    """Instances run again with their new job (restarted, or started again)."""
    update: list[tuple[str, Job]] = dataclasses.field(default_factory=list)
    """Instances that take their new job without a restart."""
    kept: list[str] = dataclasses.field(default_factory=list)
    stop_reason: str = "removed from the manifest"
    """What the instances it stops are told (their `stopped` reason)."""

    def describe(self) -> str:
        """What it did, in a few words: `restarted (cmd changed)`, `started web.3`."""
        changes = f" ({', '.join(self.changes)} changed)" if self.changes and self.action not in ("added", "removed") else ""
        parts = [f"{self.action}{changes}"]
        if self.start and self.action != "added":
            parts.append("started " + ", ".join(job.name for job in self.start))
        if self.stop and self.action != "removed":
            parts.append("stopped " + ", ".join(self.stop))
        return "; ".join(parts)

    def record(self) -> dict[str, object]:
        """As the `reload` reply carries it."""
        return {
            "process": self.process,
            "action": self.action,
            "changes": list(self.changes),
            "started": [job.name for job in self.start],
            "stopped": list(self.stop),
            "restarted": [name for name, _ in self.restart],
            "kept": list(self.kept) + [name for name, _ in self.update],
        }


@dataclasses.dataclass
class ReloadPlan:
    plan: Plan
    """The edited manifest's plan, in force once the reload is applied."""
    steps: list[ProcessStep]
    """One per process of either plan: the edited one's order, then those removed."""
    settings: list[str]
    """[settings] keys applied to the running supervisor (`max_parallel 4 → 8`)."""
    notes: list[str]
    """What a reload cannot do to what runs, said once (a region's new size)."""

    @property
    def changes_anything(self) -> bool:
        return bool(self.settings) or any(step.action != "unchanged" for step in self.steps)


def spec_changes(old: ProcessSpec, new: ProcessSpec) -> list[str]:
    """The manifest keys of a process whose values differ (its line aside)."""
    return [
        _KEYS.get(field, field)
        for field in ProcessSpec._fields
        if field not in ("name", "line") and getattr(old, field) != getattr(new, field)
    ]


def _job_changes(old: Job, new: Job) -> list[str]:
    """What differs between two jobs of one instance beyond the process's own
    keys: its environment from `[env]` or the settings' env file, its port."""
    changes = []
    if old.env != new.env:
        changes.append("env")
    if old.cmd != new.cmd:
        changes.append("cmd")
    return changes


def _restarting(changes: Iterable[str]) -> list[str]:
    return [key for key in changes if _field(key) not in NOT_RESTARTING]


def _field(key: str) -> str:
    for field, shown in _KEYS.items():
        if shown == key:
            return field
    return key


def plan_reload(running: Plan, current: Mapping[str, Sequence[Current]], edited: Plan) -> ReloadPlan:
    """The steps from what runs (`running`, and the instances of each process
    now, `current`) to the `edited` plan."""
    steps = []
    old_specs, new_specs = running.manifest.processes, edited.manifest.processes
    for process in edited.order:
        new = new_specs[process]
        if process not in old_specs:
            steps.append(ProcessStep(process, "added", start=list(edited.jobs_of(process))))
            continue
        steps.append(_changed(process, old_specs[process], new, list(current.get(process, ())), edited))
    for process in old_specs:
        if process not in new_specs:
            steps.append(ProcessStep(process, "removed", stop=[instance.name for instance in current.get(process, ())]))
    return ReloadPlan(edited, steps, _settings(running, edited), _region_notes(running.manifest, edited.manifest))


def _changed(process: str, old: ProcessSpec, new: ProcessSpec, instances: list[Current], edited: Plan) -> ProcessStep:
    changes = spec_changes(old, new)
    step = ProcessStep(process, "unchanged", changes=changes)
    manifest = edited.manifest
    if new.each is not None or old.each is not None:
        kept = _items(step, instances, edited.jobs_of(process))
    else:
        kept = _replicas(step, old, new, instances, manifest)
    restart_all = bool(_restarting(changes))
    for instance, job in kept:
        extra = [key for key in _job_changes(instance.job, job) if key not in step.changes]
        if extra:
            step.changes.extend(extra)
        if restart_all or extra:
            step.restart.append((instance.name, job))
        elif instance.job != job:
            step.update.append((instance.name, job))
        else:
            step.kept.append(instance.name)
    if step.restart:
        step.action = "restarted"
    elif step.start or step.stop:
        step.action = "scaled"
    elif step.changes:
        step.action = "updated"
    return step


def _items(step: ProcessStep, instances: list[Current], jobs: Sequence[Job]) -> list[tuple[Current, Job]]:
    """An `each` process: instances are matched by their item. A new item is
    a new instance (numbered after every instance there is), a removed one
    stops (or is forgotten, if it had ended)."""
    step.stop_reason = "reloaded: its item is gone"
    by_item = {instance.job.item: instance for instance in instances}
    wanted = {job.item for job in jobs}
    kept = []
    taken = {instance.job.index for instance in instances}
    next_index = max(taken, default=0) + 1
    for job in jobs:
        instance = by_item.get(job.item)
        if instance is not None:
            kept.append((instance, job._replace(name=instance.name, index=instance.job.index, log_name=instance.job.log_name,
                                                        env={**job.env, "PROCCTL_INSTANCE": instance.name})))
        elif job.index in taken:
            step.start.append(_renumbered(job, next_index))
            taken.add(next_index)
            next_index += 1
        else:
            step.start.append(job)
            taken.add(job.index)
            next_index = max(next_index, job.index + 1)
    step.stop.extend(instance.name for instance in instances if instance.job.item not in wanted)
    if step.start or any(instance.job.item not in wanted for instance in instances):
        step.changes = [key for key in step.changes if key != "each"] + ["each"]
    return kept


def _renumbered(job: Job, index: int) -> Job:
    name = f"{job.process}[{index}]"
    return job._replace(name=name, index=index, log_name=f"{job.process}.{index}.log", env={**job.env, "PROCCTL_INSTANCE": name})


def _replicas(step: ProcessStep, old: ProcessSpec, new: ProcessSpec, instances: list[Current], manifest: Manifest) -> list[tuple[Current, Job]]:
    """A replicated (or single) process: its instances keep their names; an
    edited `replicas` adds the lowest numbers free or stops the highest, as
    `scale` does. A count set by `scale` stands unless `replicas` was edited."""
    step.stop_reason = "reloaded: fewer replicas"
    ordered = sorted(instances, key=lambda instance: instance.job.index)
    kept = ordered
    if new.replicas != old.replicas:
        kept = _first_live(ordered, new.replicas)
        step.stop.extend(instance.name for instance in ordered if instance not in kept)
        # The lowest numbers free, as `scale` hands out (a lone `web` is replica 1).
        numbers = lowest_free({instance.job.replica for instance in ordered}, new.replicas - len(kept))
        step.start.extend(replica_job(manifest, new, number) for number in numbers)
    # A count set by `scale` stands: under an edited `port` it may not fit.
    check_ports("reload", new, [*(instance.job.replica for instance in kept), *(job.replica for job in step.start)])
    return [(instance, job_like(manifest, new, instance.job)) for instance in kept]


def _first_live(ordered: list[Current], wanted: int) -> list[Current]:
    """The `wanted` instances a new replica count keeps: the lowest numbered
    that still run, then ended ones."""
    live = [instance for instance in ordered if not instance.ended]
    ended = [instance for instance in ordered if instance.ended]
    return (live + ended)[:wanted]


def _settings(running: Plan, edited: Plan) -> list[str]:
    old, new = running.manifest.settings, edited.manifest.settings
    applied = []
    if running.max_parallel != edited.max_parallel or running.auto != edited.auto:
        applied.append(f"max_parallel {running.max_parallel} → {edited.max_parallel}")
    if old.stop_timeout_s != new.stop_timeout_s:
        applied.append(f"stop_timeout {old.stop_timeout_s:g}s → {new.stop_timeout_s:g}s")
    if old.fail_fast != new.fail_fast:
        applied.append(f"fail_fast {str(old.fail_fast).lower()} → {str(new.fail_fast).lower()}")
    return applied


def _region_notes(old: Manifest, new: Manifest) -> list[str]:
    notes = []
    for name, region in new.shared.items():
        before = old.shared.get(name)
        if before is not None and before.size_bytes != region.size_bytes:
            notes.append(
                f"shared region {name!r} keeps its size of {before.size_bytes:,} bytes until the supervisor restarts "
                f"(its users map it: a live region cannot be resized)"
            )
    return notes


# ------------------------------------------------------------------ applying


class Target(Protocol):
    """What applying a reload needs of the supervisor."""

    bus: Bus

    def instance(self, name: str) -> InstanceRunner: ...

    def add(self, job: Job) -> InstanceRunner: ...

    def forget_process(self, process: str) -> None:
        """A process is gone from the manifest: its name no longer resolves."""
        ...

    def replan(self, reload: ReloadPlan) -> None:
        """The edited plan holds from now on (settings, the pool, new regions)."""
        ...


def apply(target: Target, reload: ReloadPlan) -> None:
    """Do what `reload` says, each step through the runners' own methods,
    and tell every view what changed (one `reload` event per process that
    changed). What is stopped stops gracefully; a restart waits for the
    old run's graceful end."""
    target.replan(reload)
    for step in reload.steps:
        for name in step.stop:
            target.instance(name).retire(step.stop_reason)
        changed = ", ".join(step.changes) or "its definition"
        for name, job in step.restart:
            target.instance(name).replace(job, restart=True, reason=f"reloaded: {changed} changed")
        for name, job in step.update:
            target.instance(name).replace(job, restart=False, reason="")
        for job in step.start:
            target.add(job)
        if step.action == "removed":
            target.forget_process(step.process)
        if step.action != "unchanged":
            target.bus.publish(events.Reloaded(step.process, step.process, action=step.action, changes=list(step.changes), detail=step.describe()))
    for note in reload.notes:
        target.bus.publish(events.Notice("procctl", "procctl", message=f"reload: {note}", level="warning"))
