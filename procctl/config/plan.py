"""The plan: processes expanded into the jobs that will run, in dependency order.

Pure: replicas, `each` items (shell-quoted into string commands), PORT per
replica, dependency order and cycles. `procctl check` prints it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from procctl.config.manifest import Manifest, ProcessSpec


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
    """With {item}, {index} and {port} substituted (shell-quoted in a string command)."""
    cwd: Path
    env: Mapping[str, str]
    """Everything procctl adds to os.environ for this job: manifest env, process
    env, PORT, PROCCTL_PROCESS and PROCCTL_INSTANCE."""
    log_name: str
    """File name under .procctl/logs/: `web.log`, `web.2.log`, `thumb.7.log`."""
    spec: ProcessSpec
    item: str | None = None


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
    """The pool size in force (after -j)."""

    def jobs_of(self, process: str) -> tuple[Job, ...]:
        return tuple(job for job in self.jobs if job.process == process)


def build_plan(manifest: Manifest, *, parallel: int | None = None) -> Plan:
    """Expand and order the manifest. `parallel` (from -j) overrides max_parallel.

    Raises ManifestError for a dependency cycle, naming it (`a → b → a`).
    """
    raise NotImplementedError
