"""The plan: processes expanded into the jobs that will run, in dependency order.

Pure: replicas, `each` items (quoted for where they stand: see
config.placeholders), PORT per replica, dependency order and cycles.
`procctl check` prints it.
"""

from __future__ import annotations

import dataclasses
import graphlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from procctl.config.manifest import Manifest, ProcessSpec
from procctl.config.placeholders import render_command
from procctl.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Job:
    """One instance: a replica of a process, one `each` item, or the process itself."""

    name: str
    """Instance name: `web` (single), `web.2` (replica), `thumb[7]` (each item, 1-based)."""
    process: str
    """The process name it comes from."""
    index: int
    """1-based replica or item number; 0 when the process has a single instance."""
    cmd: str | tuple[str, ...]
    """With {item}, {index} and {port} substituted (the item quoted for where it stands)."""
    cwd: Path
    env: Mapping[str, str]
    """Everything procctl adds to os.environ for this job: manifest env, process
    env, PORT, PROCCTL_PROCESS and PROCCTL_INSTANCE."""
    log_name: str
    """File name under .procctl/logs/: `web.log`, `web.2.log`, `thumb.7.log`."""
    spec: ProcessSpec
    item: str | None = None

    @property
    def pooled(self) -> bool:
        """It waits for a slot of the pool to start (a job); a service never does."""
        return self.spec.pool


@dataclasses.dataclass(frozen=True)
class Plan:
    manifest: Manifest
    order: tuple[str, ...]
    """Process names, each after everything it depends on (stable: manifest order
    among equals)."""
    levels: Mapping[str, int]
    """Dependency depth of each process: 0 depends on nothing; stop runs from the
    deepest level down."""
    jobs: tuple[Job, ...]
    """Every instance, processes in `order`, instances in index order."""
    max_parallel: int
    """The pool size to start with (after -j)."""
    auto: bool = False
    """max_parallel = "auto" (or -j auto): the pool adapts to the machine's load."""
    parallel_cap: int = 0
    """With auto: the most that may ever run at once (-j N, else 4 × CPUs)."""
    schedule: str = "fifo"
    """'fifo' (plan order) or 'longest-first' (by predicted duration)."""
    min_free_bytes: int = 0
    """Memory to leave free when admitting jobs (auto and predicted RSS)."""

    def jobs_of(self, process: str) -> tuple[Job, ...]:
        return tuple(job for job in self.jobs if job.process == process)

    @property
    def pool_size(self) -> int:
        """The most jobs the pool can ever run at once."""
        return self.parallel_cap if self.auto else self.max_parallel

    def concurrency(self) -> int:
        """The most instances that can run at once: every service, and as
        many jobs as the pool holds."""
        pooled = sum(1 for job in self.jobs if job.pooled)
        return len(self.jobs) - pooled + min(pooled, self.pool_size)

    def starvation(self) -> str | None:
        """Why some pooled instance could wait for ever, if one could: the
        pool's every slot can be held by instances declared never to end."""
        pooled = [job for job in self.jobs if job.pooled]
        forever = [job for job in pooled if job.spec.may_run_forever]
        size = self.pool_size
        if len(forever) < size or len(pooled) <= size:
            return None
        waiting = len(pooled) - size
        holders = ", ".join(_some(job.name for job in forever))
        return (
            f"the pool of {size} can be held for ever by {holders} (restart = \"always\" or a readiness probe, "
            f"and no timeout): {waiting} other instance{'s' if waiting != 1 else ''} in the pool could wait for ever; "
            "give them a timeout, leave them out of the pool (pool = false), or raise max_parallel"
        )


def _some(names: Iterable[str], shown: int = 4) -> list[str]:
    names = list(names)
    return names if len(names) <= shown else [*names[:shown], f"… {len(names) - shown} more"]


def _job(manifest: Manifest, spec: ProcessSpec, index: int, *, replicated: bool, item: str | None = None) -> Job:
    numbers: dict[str, str] = {"index": str(index)}
    env = dict(manifest.env)
    env.update(spec.env)
    if spec.port is not None:
        port = spec.port + max(index, 1) - 1 if replicated else spec.port
        numbers["port"] = str(port)
        env["PORT"] = str(port)
    if item is not None:
        name, log_name = f"{spec.name}[{index}]", f"{spec.name}.{index}.log"
        env["PROCCTL_ITEM"] = item
    elif replicated:
        name, log_name = f"{spec.name}.{index}", f"{spec.name}.{index}.log"
    else:
        name, log_name = spec.name, f"{spec.name}.log"
    env["PROCCTL_PROCESS"] = spec.name
    env["PROCCTL_INSTANCE"] = name
    return Job(
        name=name,
        process=spec.name,
        index=index,
        cmd=render_command(spec.cmd, numbers, item),
        cwd=spec.cwd,
        env=env,
        log_name=log_name,
        spec=spec,
        item=item,
    )


def replica_job(manifest: Manifest, spec: ProcessSpec, index: int) -> Job:
    """Replica `index` (1-based) of a process: what `scale` adds at run time."""
    return _job(manifest, spec, index, replicated=True)


def job_like(manifest: Manifest, spec: ProcessSpec, old: Job) -> Job:
    """The job a (changed) definition makes of an existing instance: the same
    name, number and item — what a reload restarts it with."""
    if old.item is not None:
        return _job(manifest, spec, old.index, replicated=False, item=old.item)
    return _job(manifest, spec, old.index, replicated=old.index > 0)


def dependency_levels(processes: Mapping[str, ProcessSpec]) -> dict[str, int]:
    """The dependency depth of each process (0: it depends on nothing), by
    one walk of the graph. Raises graphlib.CycleError, whose second argument
    is the cycle (each process a dependency of the one before it... read
    backwards: see `cycle_of`)."""
    sorter = graphlib.TopologicalSorter({name: spec.depends_on for name, spec in processes.items()})
    levels: dict[str, int] = {}
    for name in sorter.static_order():
        deps = processes[name].depends_on if name in processes else ()
        levels[name] = 1 + max((levels[dep] for dep in deps), default=-1)
    return levels


def cycle_of(error: graphlib.CycleError, processes: Mapping[str, ProcessSpec]) -> list[str]:
    """The cycle a CycleError found, as dependencies read (`api → worker →
    db → api`: api depends on worker...), from the process defined first."""
    cycle = list(reversed(error.args[1]))[:-1]
    start = min(range(len(cycle)), key=lambda i: list(processes).index(cycle[i]))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]


def _order(manifest: Manifest) -> tuple[tuple[str, ...], dict[str, int]]:
    levels = dependency_levels(manifest.processes)
    position = {name: i for i, name in enumerate(manifest.processes)}
    order = tuple(sorted(manifest.processes, key=lambda n: (levels[n], position[n])))
    return order, levels


def build_plan(
    manifest: Manifest, *, parallel: int | None = None, auto: bool | None = None, schedule: str | None = None
) -> Plan:
    """Expand and order the manifest. `parallel` (from -j N) overrides
    max_parallel and is a hard cap under auto; `auto` (from -j auto) turns on
    the adaptive pool; `schedule` overrides the manifest's.

    The manifest loader has already refused dependency cycles."""
    if parallel is not None and parallel < 1:
        raise UsageError("--parallel: must be at least 1")
    order, levels = _order(manifest)
    jobs: list[Job] = []
    for name in order:
        spec = manifest.processes[name]
        if spec.each is not None:
            jobs.extend(_job(manifest, spec, i, replicated=False, item=item) for i, item in enumerate(spec.each, start=1))
        elif spec.replicas > 1:
            jobs.extend(_job(manifest, spec, i, replicated=True) for i in range(1, spec.replicas + 1))
        else:
            jobs.append(_job(manifest, spec, 0, replicated=False))
    settings = manifest.settings
    cpus = os.cpu_count() or 1
    adaptive = auto if auto is not None else settings.max_parallel == "auto"
    if adaptive:
        cap = parallel if parallel is not None else 4 * cpus
        pool = min(cpus, cap)
    else:
        cap = 0
        pool = parallel if parallel is not None else settings.max_parallel if isinstance(settings.max_parallel, int) else cpus
    total = _total_memory()
    min_free = settings.min_free_memory if settings.min_free_memory is not None else total // 10
    return Plan(
        manifest=manifest,
        order=order,
        levels=levels,
        jobs=tuple(jobs),
        max_parallel=pool,
        auto=adaptive,
        parallel_cap=cap,
        schedule=schedule or settings.schedule,
        min_free_bytes=min_free,
    )


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
