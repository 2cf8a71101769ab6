"""The manifest's model: named tuples, read from TOML or a Procfile (and
.env) by `config.loader`. The `Literal` annotations here are what the loader
allows. Never spawns, never prints.

Named tuples, not dataclasses: every start of `check` and `run` makes these
classes, and the dataclasses module (with inspect, which it imports) and the
code it generates for each class cost `check` about 8 ms more, measured. A
changed copy is `spec._replace(...)`, the field names `Limits._fields`.
"""

# (No `from __future__ import annotations` here: typing.NamedTuple compiles
# every annotation given as text, 79 of them, which cost `check` and `run`
# 1 ms more at every start than evaluating them.)

import os
import re
import signal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple, overload

from procctl.bounds import MAX_POOL, MAX_REPLICAS

PROCESS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
"""What a process may be called: letters, digits, '-' and '_'."""
MAX_NAME_LENGTH = 128
"""The longest process name: with an instance's number and `.log` its log
file's name stays well inside NAME_MAX (255 bytes)."""
MAX_RLIMIT = 2**62
"""The largest count or size procctl takes for a limit: well inside what the
kernel's 64-bit fields hold."""

RestartPolicy = Literal["no", "on-failure", "always"]
DependencyCondition = Literal["started", "ready", "succeeded"]
ProbeKind = Literal["log", "tcp", "http", "exec", "notify"]
RegionMode = Literal["rw", "ro"]
ExecutorName = Literal["local", "dask"]


class ReadySpec(NamedTuple):
    """How to tell that a process is ready."""

    kind: ProbeKind
    target: str
    """A regex (log), 'host:port' (tcp), a URL (http), a shell command (exec),
    or '' (notify: the process sends READY=1 to $NOTIFY_SOCKET)."""
    timeout_s: float = 60.0
    """Longest wait for the probe to pass before the instance counts as failed."""
    interval_s: float = 0.25
    """Pause between two attempts of a tcp, http or exec probe."""


LivenessKind = Literal["tcp", "http", "exec"]


class LivenessSpec(NamedTuple):
    """How to tell that a running process still answers (process-compose's
    and Kubernetes' liveness probe). It starts once the process is ready (or
    has started, with no readiness probe); `failures` probes in a row that
    fail stop it as hung, and its restart policy decides what follows."""

    kind: LivenessKind
    target: str
    """'host:port' (tcp), a URL (http), a shell command (exec)."""
    interval_s: float = 10.0
    """Between two probes (and before the first)."""
    timeout_s: float = 5.0
    """Longest wait for one probe's answer."""
    failures: int = 3
    """Probes in a row that fail before the process counts as hung."""


DEFAULT_LOG_MAX_SIZE = 32 * 1024 * 1024
"""A log rotates before it would grow past this."""
DEFAULT_LOG_KEEP = 7
"""Rotated files kept per log: with the current one, at most 8 × 32 MiB =
256 MiB of an instance's output, a week of a chatty service."""


class WatchSpec(NamedTuple):
    """`watch`: files whose change restarts the process."""

    paths: tuple[str, ...]
    """Globs relative to the process's cwd (`src/**/*.py`); a plain path
    also means everything under it."""
    ignore: tuple[str, ...] = ()
    """More to ignore, on top of the defaults (`.git`, `__pycache__`,
    `node_modules`, `.procctl`, editors' swap files…)."""
    debounce_s: float = 0.2
    """A batch of changes is acted on once none came for this long."""


class Limits(NamedTuple):
    """Resource limits of one instance's tree. Kernel rlimits are (soft, hard)."""

    memory: int | None = None
    """Bytes of RSS, summed over the whole tree."""
    address_space: tuple[int, int] | None = None
    """RLIMIT_AS, bytes."""
    cpu_time: tuple[int, int] | None = None
    """RLIMIT_CPU, seconds (per process)."""
    nofile: tuple[int, int] | None = None
    nproc: tuple[int, int] | None = None
    fsize: tuple[int, int] | None = None
    """RLIMIT_FSIZE, bytes."""
    core: tuple[int, int] | None = None
    """RLIMIT_CORE, bytes."""
    cpu_percent: float | None = None
    """Share of one core the tree may use (100 = one full core)."""

    def merged_over(self, default: "Limits") -> "Limits":
        """These limits, with the settings' defaults where none is set."""
        return Limits(*(mine if mine is not None else theirs for mine, theirs in zip(self, default)))

    @property
    def empty(self) -> bool:
        return all(value is None for value in self)


class ItemRange(Sequence[str]):
    """The items of `each = { range = [first, last] }`: numbers as text, made
    when asked for. A million of them cost two integers, not a million strings."""

    __slots__ = ("first", "last")

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last

    def __len__(self) -> int:
        return max(self.last - self.first + 1, 0)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        numbers = range(self.first, self.last + 1)[index]
        return str(numbers) if isinstance(numbers, int) else [str(n) for n in numbers]

    def __iter__(self) -> Iterator[str]:
        return map(str, range(self.first, self.last + 1))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ItemRange):
            return len(self) == len(other) == 0 or (self.first, self.last) == (other.first, other.last)
        if isinstance(other, (tuple, list)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __hash__(self) -> int:
        # As a tuple of the same items hashes: equal objects, equal hashes.
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"ItemRange({self.first}, {self.last})"


class ProcessSpec(NamedTuple):
    """One `[process.NAME]` table (or one Procfile line)."""

    name: str
    cmd: str | tuple[str, ...]
    """A string runs through /bin/sh -c; a tuple is exec'd as is."""
    cwd: Path
    """Absolute; relative paths in the manifest are taken from its directory."""
    env: Mapping[str, str]
    """This process's own variables: its env_file, then its [env] table."""
    depends_on: Mapping[str, DependencyCondition]
    ready: ReadySpec | None = None
    liveness: LivenessSpec | None = None
    restart: RestartPolicy = "no"
    max_restarts: int = 5
    """Restarts in a row, each after a run shorter than `min_uptime_s`, before
    procctl gives up on it (pm2's max_restarts, supervisord's startretries)."""
    min_uptime_s: float = 5.0
    """A run that lasted this long was a good one: the restart budget and the
    backoff start afresh after it (pm2's min_uptime, supervisord's startsecs)."""
    backoff_s: float = 1.0
    """First delay before a restart; doubles each time, capped at 30 s."""
    replicas: int = 1
    port: int | None = None
    """Base port: replica i (1-based) gets PORT = port + i - 1."""
    each: Sequence[str] | None = None
    """Items, one job each: a tuple (a list, or a glob expanded and sorted at
    load time) or an `ItemRange`, whose items are made as they are asked for."""
    timeout_s: float | None = None
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout_s: float | None = None
    """None: the [settings] stop_timeout."""
    limits: Limits = Limits()
    """With the [settings] limits already merged in."""
    on_limit: Literal["kill", "restart"] = "kill"
    nice: int | None = None
    line: int = 0
    """Line of the manifest where this process is defined."""
    env_file: Path | None = None
    """The process's own env_file, absolute (its values are already in `env`)."""
    watchdog_s: float | None = None
    """Longest time between two WATCHDOG=1 notifications before the run
    counts as hung and is stopped (then restarted as `restart` says)."""
    shared: tuple[tuple[str, RegionMode], ...] = ()
    """The shared regions it uses, each read-write or read-only."""
    exit_on_end: bool = False
    """When one of its instances ends (and will not restart), the rest are
    stopped and procctl exits with its code: as foreman and honcho run every
    Procfile line (process-compose's `exit_on_end`)."""
    pool: bool = False
    """Its instances take a slot of the pool (`max_parallel`) to start: always
    for `each` jobs; for a plain process when it (or `[settings] pool`) says
    so. Everything else starts as soon as its dependencies allow."""
    watch: WatchSpec | None = None
    """Restart it when these files change."""
    tty: bool = False
    """Run it on a pseudo-terminal of its own."""
    log_max_size: int = DEFAULT_LOG_MAX_SIZE
    log_keep: int = DEFAULT_LOG_KEEP
    executor: ExecutorName = "local"
    """Where its jobs run: this machine, or the Dask cluster of `[settings]
    dask` (`each` jobs only)."""

    @property
    def may_run_forever(self) -> bool:
        """Declared to keep running (restarted whenever it ends, or probed for
        readiness as a service is) and with no `timeout` to end it."""
        return self.timeout_s is None and (self.restart == "always" or self.ready is not None)


class SharedRegion(NamedTuple):
    """One `[shared.NAME]` table: a region of memory the supervisor creates."""

    name: str
    size_bytes: int
    line: int = 0


class DaskSettings(NamedTuple):
    """`[settings] dask`: the cluster that `executor = "dask"` sends jobs to."""

    scheduler: str
    """The scheduler's address, as Dask takes it: `tcp://HOST:PORT`."""


class Settings(NamedTuple):
    max_parallel: int | Literal["auto"] = os.cpu_count() or 1
    """The pool's size: jobs running at once (services are never held by it)."""
    stop_timeout_s: float = 10.0
    fail_fast: bool = True
    metrics_interval_s: float = 1.0
    env_file: Path | None = None
    limits: Limits = Limits()
    on_limit: Literal["kill", "restart"] = "kill"
    nice: int | None = None
    schedule: Literal["fifo", "longest-first"] = "fifo"
    min_free_memory: int | None = None
    """Bytes to keep free when admitting jobs; None: 10 % of RAM."""
    exit_on_end: bool = False
    """Every process's `exit_on_end`, unless it says otherwise."""
    pool: bool = False
    """Plain processes take a pool slot unless they say `pool = false`
    (CI steps written as processes sharing a bound)."""
    tty: bool = False
    """Every process runs on a pseudo-terminal unless it says `tty = false`."""
    log_max_size: int = DEFAULT_LOG_MAX_SIZE
    log_keep: int = DEFAULT_LOG_KEEP
    dask: DaskSettings | None = None
    max_parallel_given: bool = False
    """The manifest sets `max_parallel` (else a cluster's pool follows its threads)."""


class Manifest(NamedTuple):
    path: Path
    """The manifest file, absolute."""
    settings: Settings
    env: Mapping[str, str]
    """For every process: the settings env_file, then [env]. Not os.environ."""
    processes: Mapping[str, ProcessSpec]
    """In the order the manifest defines them."""
    kind: Literal["toml", "procfile"] = "toml"
    shared: Mapping[str, SharedRegion] = {}  # (never changed: a read-only Mapping)
    """The `[shared.NAME]` regions, in the order the manifest defines them."""
    warnings: tuple[str, ...] = ()
    """What is allowed but probably not meant (an `each` that makes no job),
    each as one line naming file:line:key; the CLI shows them."""

    @property
    def root(self) -> Path:
        """The directory of the manifest; `.procctl/` lives here."""
        return self.path.parent

