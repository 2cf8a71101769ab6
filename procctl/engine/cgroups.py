"""Kernel enforcement of `memory` and `cpu_percent` over a whole process tree:
one cgroup per instance, under a group of this supervisor's own.

cgroup v2 (`memory.max`, `memory.swap.max`, `memory.oom.group`, `cpu.max`)
where this process's group offers the controllers and may be given children;
cgroup v1 (`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes`,
`cpu.cfs_quota_us`) where a host still binds them to v1 hierarchies. Anything
refused on the way (no controller, a read-only or undelegated tree) yields no
host: the supervisor then keeps the watchdog and the duty cycle.

A child joins its group between fork and exec, by writing `0` (itself) to a
`cgroup.procs` descriptor the parent opened, so that everything it runs and
everything it forks is in the group from its first instruction.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import NamedTuple

CPU_PERIOD_US = 100_000
"""The period of the CPU quota: `cpu_percent` of one core per 100 ms."""

DISABLE_VAR = "PROCCTL_CGROUPS"
"""`PROCCTL_CGROUPS=off` keeps the watchdog and the duty cycle even where
cgroups could be used."""

GROUP_PREFIX = "procctl."
WANTED = ("memory", "cpu")


class Hierarchy(NamedTuple):
    """This process's group in one mounted cgroup hierarchy."""

    version: int
    own: Path


def read_text(path: Path) -> str:
    return path.read_text()


def write_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mount_table(mountinfo: str) -> list[tuple[str, Path, str, set[str]]]:
    """(root within the hierarchy, mount point, fs type, super options) of each cgroup mount."""
    found = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mount_point = fields[4].replace("\\040", " ")
        found.append((fields[3], Path(mount_point), tail[0], set(tail[2].split(","))))
    return found


def locate(controllers: tuple[str, ...] = WANTED, *, proc: Path = Path("/proc/self")) -> dict[str, Hierarchy]:
    """Where each of `controllers` can be reached from this process: its
    cgroup v2 group when that offers the controller, else a v1 hierarchy."""
    try:
        memberships = read_text(proc / "cgroup").splitlines()
        mounts = mount_table(read_text(proc / "mountinfo"))
    except OSError:
        return {}
    v1_paths: dict[str, str] = {}
    v2_path: str | None = None
    for line in memberships:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2_path = parts[2]
        else:
            for name in parts[1].split(","):
                v1_paths[name] = parts[2]

    def place(root: str, mount: Path, path: str) -> Path | None:
        # A mount may show only a subtree of the hierarchy (containers).
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            return None
        rel = path[len(root) :].strip("/")
        return mount / rel if rel else mount

    found: dict[str, Hierarchy] = {}
    for root, mount, fstype, options in mounts:
        if fstype == "cgroup2" and v2_path is not None:
            placed = place(root, mount, v2_path)
            if placed is None:
                continue
            try:
                offered = set(read_text(placed / "cgroup.controllers").split())
            except OSError:
                continue
            for name in controllers:
                if name in offered:
                    found.setdefault(name, Hierarchy(2, placed))
    for root, mount, fstype, options in mounts:
        if fstype != "cgroup":
            continue
        for name in controllers:
            if name in options and name in v1_paths and name not in found:
                placed = place(root, mount, v1_paths[name])
                if placed is not None:
                    found[name] = Hierarchy(1, placed)
    return found


class Group:
    """The cgroup of one instance: one directory per hierarchy it lives in
    (one under v2; under v1, memory and cpu may be two)."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs

    @property
    def label(self) -> str:
        return f"cgroup v{self.version}"

    def has(self, controller: str) -> bool:
        return controller in self.dirs

    def open_procs(self) -> list[int]:
        """Descriptors on each `cgroup.procs` of the group, for a child to
        join by writing `0` before exec. The caller closes them."""
        fds: list[int] = []
        try:
            for path in dict.fromkeys(self.dirs.values()):
                fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def set_memory(self, limit: int | None) -> None:
        """Cap the group's memory, swap included (none: no cap). Raises OSError."""
        path = self.dirs["memory"]
        if self.version == 2:
            write_text(path / "memory.max", "max" if limit is None else str(limit))
            _write_if_there(path / "memory.swap.max", "max" if limit is None else "0")
            # A breach ends the whole tree at once, not its largest process alone.
            _write_if_there(path / "memory.oom.group", "1")
            return
        value = -1 if limit is None else limit
        limit_file, swap_file = path / "memory.limit_in_bytes", path / "memory.memsw.limit_in_bytes"
        if not swap_file.exists():
            write_text(limit_file, str(value))
            return
        # memsw may never be below the plain limit: raise it first, lower it last.
        raising = value < 0 or value > int(read_text(limit_file))
        for target in (swap_file, limit_file) if raising else (limit_file, swap_file):
            write_text(target, str(value))

    def set_cpu(self, percent: float | None) -> None:
        """Hold the group to `percent` of one core (none: no cap). Raises OSError."""
        path = self.dirs["cpu"]
        quota = None if percent is None else max(1000, round(CPU_PERIOD_US * percent / 100))
        if self.version == 2:
            write_text(path / "cpu.max", f"{'max' if quota is None else quota} {CPU_PERIOD_US}")
            return
        write_text(path / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        write_text(path / "cpu.cfs_quota_us", str(-1 if quota is None else quota))

    def oom_kills(self) -> int:
        """How many processes of the group the kernel's OOM killer has ended."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            match = re.search(r"^oom_kill (\d+)$", read_text(self.dirs["memory"] / name), re.MULTILINE)
        except OSError:
            return 0
        return int(match.group(1)) if match else 0

    def peak_memory(self) -> int:
        """The most memory the group has held (its current figure where the
        kernel keeps no peak)."""
        path = self.dirs["memory"]
        names = ("memory.peak", "memory.current") if self.version == 2 else ("memory.max_usage_in_bytes", "memory.usage_in_bytes")
        for name in names:
            try:
                return int(read_text(path / name))
            except (OSError, ValueError):
                continue
        return 0

    def remove(self) -> bool:
        """Remove the group's directories; False while a process is still in one."""
        gone = True
        for path in dict.fromkeys(self.dirs.values()):
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone


def _write_if_there(path: Path, text: str) -> None:
    try:
        write_text(path, text)
    except FileNotFoundError:
        pass


class Host:
    """This supervisor's own group (`procctl.PID`) in each hierarchy it uses,
    and the instance groups made under it."""

    def __init__(self, version: int, bases: dict[str, Path], delegation: Delegation | None = None) -> None:
        self.version = version
        self.bases = bases
        """Controller → this supervisor's group that holds the instance groups."""
        self._delegation = delegation
        self._groups: list[Group] = []
        self._serial = 0

    @classmethod
    def create(cls, controllers: tuple[str, ...] = WANTED, companions: tuple[int, ...] = ()) -> Host | None:
        """A host for `controllers` (those that can be had), or None.
        `companions` are helper processes of this supervisor that share its
        group (the guardian): under v2 they move with it."""
        if os.environ.get(DISABLE_VAR, "").lower() in ("0", "off", "no", "false"):
            return None
        places = locate(controllers)
        if not places:
            return None
        # One version at a time: the one that offers more, v2 on a tie.
        versions = [place.version for place in places.values()]
        version = max(set(versions), key=lambda v: (versions.count(v), v))
        places = {name: place for name, place in places.items() if place.version == version}
        sweep_stale({place.own for place in places.values()})
        try:
            return _create_v2(places, companions) if version == 2 else _create_v1(places)
        except OSError:
            return None

    @property
    def controllers(self) -> set[str]:
        return set(self.bases)

    def group(self, name: str, controllers: set[str]) -> Group:
        """A new group for an instance, with those of `controllers` this host
        has. Raises OSError."""
        self._serial += 1
        leaf = f"{self._serial}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        dirs: dict[str, Path] = {}
        for controller in sorted(controllers & self.controllers):
            path = self.bases[controller] / leaf
            try:
                path.mkdir()
            except FileExistsError:
                pass
            except OSError:
                Group(self.version, dirs).remove()
                raise
            dirs[controller] = path
        group = Group(self.version, dirs)
        self._groups.append(group)
        return group

    def close(self) -> None:
        """Remove every group made here (those still holding a process stay)."""
        for group in self._groups:
            group.remove()
        self._groups.clear()
        for path in dict.fromkeys(self.bases.values()):
            try:
                path.rmdir()
            except OSError:
                pass
        if self._delegation is not None:
            self._delegation.undo()
            self._delegation = None


def _may_live(pid: int) -> bool:
    """Whether process `pid` exists, as far as a signal 0 tells (a run
    sweeps before its first spawn, and psutil costs 7 ms to import)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep_stale(parents: set[Path]) -> None:
    """Remove the empty groups of supervisors that died without cleaning up."""
    for parent in parents:
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = re.fullmatch(re.escape(GROUP_PREFIX) + r"(\d+)(\.supervisor|\.run)?", entry.name)
            if match is None or not entry.is_dir() or _may_live(int(match.group(1))):
                continue
            for child in entry.iterdir():
                if child.is_dir():
                    try:
                        child.rmdir()
                    except OSError:
                        pass
            try:
                entry.rmdir()
            except OSError:
                pass


def _create_v1(places: dict[str, Hierarchy]) -> Host:
    bases: dict[str, Path] = {}
    try:
        for name, place in places.items():
            base = place.own / f"{GROUP_PREFIX}{os.getpid()}"
            base.mkdir(exist_ok=True)
            bases[name] = base
    except OSError:
        Host(1, bases).close()
        raise
    return Host(1, bases)


class Delegation(NamedTuple):
    """Under v2 a group holding processes cannot hand controllers down (the
    root excepted). When the supervisor and its helpers are alone in their
    group, they move into a leaf of their own (`procctl.PID.supervisor`) and
    the controllers are enabled in the group they left; `undo` puts
    everything back as it was."""

    group: Path
    leaf: Path
    controllers: tuple[str, ...]
    pids: tuple[int, ...]

    @classmethod
    def make(cls, group: Path, controllers: tuple[str, ...], pids: tuple[int, ...]) -> Delegation:
        leaf = group / f"{GROUP_PREFIX}{os.getpid()}.supervisor"
        leaf.mkdir(exist_ok=True)
        delegation = cls(group, leaf, controllers, pids)
        try:
            for pid in pids:
                write_text(leaf / "cgroup.procs", str(pid))
            write_text(group / "cgroup.subtree_control", " ".join(f"+{name}" for name in controllers))
        except OSError:
            delegation.undo()
            raise
        return delegation

    def undo(self) -> None:
        # Best effort: a step the kernel refuses leaves an empty leaf, which
        # a later supervisor's sweep removes.
        try:
            write_text(self.group / "cgroup.subtree_control", " ".join(f"-{name}" for name in self.controllers))
            for pid in self.pids:
                try:
                    write_text(self.group / "cgroup.procs", str(pid))
                except ProcessLookupError:
                    pass
            self.leaf.rmdir()
        except OSError:
            pass


def _create_v2(places: dict[str, Hierarchy], companions: tuple[int, ...]) -> Host:
    own = next(iter(places.values())).own
    wanted = tuple(sorted(places))
    enable = " ".join(f"+{name}" for name in wanted)
    delegation: Delegation | None = None
    try:
        write_text(own / "cgroup.subtree_control", enable)
    except OSError as exc:
        ours = (os.getpid(), *companions)
        if exc.errno != errno.EBUSY or not _only(own, ours):
            raise
        delegation = Delegation.make(own, wanted, ours)
    base = own / f"{GROUP_PREFIX}{os.getpid()}"
    try:
        base.mkdir(exist_ok=True)
        write_text(base / "cgroup.subtree_control", enable)
    except OSError:
        try:
            base.rmdir()
        except OSError:
            pass
        if delegation is not None:
            delegation.undo()
        raise
    return Host(2, {name: base for name in wanted}, delegation)


def _only(group: Path, pids: tuple[int, ...]) -> bool:
    """True when the group holds these processes and no other."""
    try:
        return {int(pid) for pid in read_text(group / "cgroup.procs").split()} <= set(pids)
    except (OSError, ValueError):
        return False
