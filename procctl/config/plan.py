"""The plan: processes expanded into the jobs that will run, in dependency order.

Pure: replicas, `each` items (quoted for where they stand: see
config.placeholders), PORT per replica, dependency order and cycles.
`procctl check` prints it.
"""

from __future__ import annotations

import graphlib
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, overload
from pathlib import Path

from procctl.bounds import MAX_PORT
from procctl.config.manifest import Manifest, ProcessSpec
from procctl.config.placeholders import render_command
from procctl.errors import UsageError


class Job(NamedTuple):
    """One instance: a replica of a process, one `each` item, or the process
    itself. (A named tuple, as the manifest's model is: cheaper to define at
    every start, and to make for each of a big pool's jobs.)"""

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
    def replica(self) -> int:
        """Its replica number: `index`, and 1 for a lone instance (`web` is
        replica 1 of its process: its PORT is the manifest's `port`)."""
        return max(self.index, 1)

    @property
    def pooled(self) -> bool:
        """It waits for a slot of the pool to start (a job); a service never does."""
        return self.spec.pool


EAGER_JOBS = 10_000
"""A process with more instances than this (an `each` over a big range) is
never expanded whole: its instances are made as the pool admits them, and
what is shown of it (check, predictions, the summary) is summed up."""


class Segment(Sequence[Job]):
    """The instances of one process, each made when asked for: a million
    `each` items cost nothing until the pool admits them."""

    __slots__ = ("manifest", "spec", "kept")

    def __init__(self, manifest: Manifest, spec: ProcessSpec, kept: tuple[int, ...] | None = None) -> None:
        self.manifest = manifest
        self.spec = spec
        self.kept = kept
        """Of an `each`, the indexes (from 0) of the items kept, each still
        under its own number (`--rerun-failed`); None: all of them."""

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.manifest, self.spec, self.kept) == (other.manifest, other.spec, other.kept)  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Segment(manifest={self.manifest!r}, spec={self.spec!r}, kept={self.kept!r})"

    def __len__(self) -> int:
        spec = self.spec
        if spec.each is not None:
            return len(spec.each) if self.kept is None else len(self.kept)
        return spec.replicas

    def _item(self, at: int) -> Job:
        """The `each` job of item `at` (from 0 in the whole list)."""
        assert self.spec.each is not None
        return _job(self.manifest, self.spec, at + 1, replicated=False, item=self.spec.each[at])

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(index)
        spec = self.spec
        if spec.each is not None:
            return self._item(index if self.kept is None else self.kept[index])
        if spec.replicas > 1:
            return _job(self.manifest, spec, index + 1, replicated=True)
        return _job(self.manifest, spec, 0, replicated=False)

    def __iter__(self) -> Iterator[Job]:
        spec = self.spec
        if spec.each is not None and self.kept is not None:
            for at in self.kept:
                yield self._item(at)
        elif spec.each is not None:
            for i, item in enumerate(spec.each, start=1):
                yield _job(self.manifest, spec, i, replicated=False, item=item)
        elif spec.replicas > 1:
            for i in range(1, spec.replicas + 1):
                yield _job(self.manifest, spec, i, replicated=True)
        else:
            yield _job(self.manifest, spec, 0, replicated=False)

    def named(self, name: str) -> Job | None:
        """The instance called `name` (`thumb[7]`, `web.2`, `web`), if it is one of these."""
        process = self.spec.name
        if name == process:
            return self[0] if self.spec.each is None and self.spec.replicas == 1 else None
        if self.spec.each is not None:
            number = name[len(process) + 1 : -1] if name.startswith(process + "[") and name.endswith("]") else ""
        elif self.spec.replicas > 1:
            number = name[len(process) + 1 :] if name.startswith(process + ".") else ""
        else:
            return None
        if not number.isdigit() or number != str(int(number)):
            return None
        if self.spec.each is not None:
            at = int(number) - 1
            whole = len(self.spec.each)
            return self._item(at) if 0 <= at < whole and (self.kept is None or at in self.kept) else None
        if not 1 <= int(number) <= len(self):
            return None
        return self[int(number) - 1]

    @property
    def longest_name(self) -> str:
        """The widest instance name (the last one's number has the most digits)."""
        count = len(self)
        if self.spec.each is not None:
            return f"{self.spec.name}[{count if self.kept is None else self.kept[-1] + 1 if self.kept else 0}]"
        return f"{self.spec.name}.{count}" if count > 1 else self.spec.name


class Jobs(Sequence[Job]):
    """Every instance of a plan, processes in dependency order, each made when
    asked for (`Segment`)."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = tuple(segments)
        self._by_process = {segment.spec.name: segment for segment in self.segments}
        self._len = sum(len(segment) for segment in self.segments)

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        for segment in self.segments:
            if index < len(segment):
                return segment[index]
            index -= len(segment)
        raise IndexError(index)

    def __iter__(self) -> Iterator[Job]:
        for segment in self.segments:
            yield from segment

    def of(self, process: str) -> Segment | tuple[()]:
        return self._by_process.get(process, ())

    def named(self, name: str) -> Job | None:
        """The instance called `name`, found without making the others."""
        process = name.split("[", 1)[0] if name.endswith("]") else name
        segment = self._by_process.get(process)
        if segment is None and "." in name:
            segment = self._by_process.get(name.rsplit(".", 1)[0])
        return segment.named(name) if segment is not None else None

    def longest_names(self) -> list[str]:
        """One name per process, the widest of its instances (for aligning columns)."""
        return [segment.longest_name for segment in self.segments if len(segment)]


class Plan(NamedTuple):
    """What a run will do. (A named tuple: made at every start of procctl,
    where a dataclass costs 0.5 ms more to make.)"""

    manifest: Manifest
    order: tuple[str, ...]
    """Process names, each after everything it depends on (stable: manifest order
    among equals)."""
    levels: Mapping[str, int]
    """Dependency depth of each process: 0 depends on nothing; stop runs from the
    deepest level down."""
    jobs: Jobs
    """Every instance, processes in `order`, instances in index order; each
    made when asked for."""
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

    def jobs_of(self, process: str) -> Sequence[Job]:
        return self.jobs.of(process)

    @property
    def pool_size(self) -> int:
        """The most jobs the pool can ever run at once."""
        return self.parallel_cap if self.auto else self.max_parallel

    def pooled_count(self) -> int:
        """How many instances wait for a slot of the pool (jobs)."""
        return sum(len(segment) for segment in self.jobs.segments if segment.spec.pool)

    def concurrency(self) -> int:
        """The most instances that can run at once: every service, and as
        many jobs as the pool holds."""
        pooled = self.pooled_count()
        return len(self.jobs) - pooled + min(pooled, self.pool_size)

    def starvation(self) -> str | None:
        """Why some pooled instance could wait for ever, if one could: the
        pool's every slot can be held by instances declared never to end."""
        pooled = self.pooled_count()
        forever_segments = [segment for segment in self.jobs.segments if segment.spec.pool and segment.spec.may_run_forever]
        forever = sum(len(segment) for segment in forever_segments)
        size = self.pool_size
        if forever < size or pooled <= size:
            return None
        waiting = pooled - size
        holders = ", ".join(_some(job.name for segment in forever_segments for job in segment[: size + 1]))
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


def lowest_free(taken: Collection[int], count: int) -> list[int]:
    """The `count` lowest replica numbers (from 1) not in `taken`: what a
    scale up hands out, as docker compose does, so replica 1 keeps the
    manifest's `port` and a count of N never needs a number past N."""
    numbers: list[int] = []
    candidate = 1
    while len(numbers) < count:
        if candidate not in taken:
            numbers.append(candidate)
        candidate += 1
    return numbers


def check_ports(doing: str, spec: ProcessSpec, numbers: Iterable[int]) -> None:
    """Refuse (UsageError) replicas whose PORT (`port + number − 1`) would
    pass 65535: checked on the numbers handed out, whatever asked for them."""
    last = max(numbers, default=0)
    if spec.port is None or spec.port + last - 1 <= MAX_PORT:
        return
    most = MAX_PORT - spec.port + 1
    raise UsageError(
        f"{doing}: {spec.name}.{last} would get PORT={spec.port + last - 1}, past {MAX_PORT} "
        f"(its port is {spec.port}: at most {most} replica{'s' if most != 1 else ''})"
    )


def lone_name(name: str) -> str | None:
    """The lone instance `name` may stand for: `web.1` is replica 1, which a
    process started with one replica calls `web` (and keeps calling `web`
    when it is scaled up: its log and its history stay under that name)."""
    process, dot, number = name.rpartition(".")
    return process if dot and number == "1" else None


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


def _segment(manifest: Manifest, spec: ProcessSpec, only_items: Mapping[str, Collection[str]] | None) -> Segment:
    keep = only_items.get(spec.name) if only_items is not None and spec.each is not None else None
    if keep is None or spec.each is None:
        return Segment(manifest, spec)
    return Segment(manifest, spec, tuple(at for at, item in enumerate(spec.each) if item in keep))


def build_plan(
    manifest: Manifest,
    *,
    parallel: int | None = None,
    auto: bool | None = None,
    schedule: str | None = None,
    only_items: Mapping[str, Collection[str]] | None = None,
) -> Plan:
    """Expand and order the manifest. `parallel` (from -j N) overrides
    max_parallel and is a hard cap under auto; `auto` (from -j auto) turns on
    the adaptive pool; `schedule` overrides the manifest's; `only_items`
    keeps, of the `each` processes it names, only those items (each under
    its own index, as in a whole run: `--rerun-failed`).

    The manifest loader has already refused dependency cycles."""
    if parallel is not None and parallel < 1:
        raise UsageError("--parallel: must be at least 1")
    order, levels = _order(manifest)
    jobs = Jobs([_segment(manifest, manifest.processes[name], only_items) for name in order])
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
        jobs=jobs,
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
