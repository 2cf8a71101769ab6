"""Every process of a run in one cgroup it cannot leave.

A process can clear its environment (the guardian's token) and call setsid
(its process group), but it cannot leave its cgroup: only a write to another
group's `cgroup.procs`, with the rights to it, moves it. So at the start of a
run the supervisor makes a group of its own (`procctl.PID.run`) and moves
itself into it; everything it forks from then on is born there, as is
everything those processes fork, at no cost per spawn (a group per child
would force a fork instead of a vfork, and a write, for every job). At the
end the supervisor moves itself back where it was (once nothing is spawned
any more: the local executor does it on a thread, as the kernel makes the
move wait), kills whatever is still in the group and removes the group; if
it dies first, the guardian kills the whole group.

The hierarchy: cgroup v2 (the unified one, controllers or not) where this
process may make a group; else cgroup v1 `pids` or `freezer`. None of them
(no cgroupfs, no rights): no group, and the environment token is what finds
escaped processes, as before.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from procctl.engine.cgroups import DISABLE_VAR, GROUP_PREFIX, locate, mount_table, read_text, sweep_stale, write_text

SUFFIX = ".run"
KILL_ROUNDS = 20
"""Rounds of kill-and-look when the kernel has no `cgroup.kill` (a process may
fork between our reading the group and our signal reaching it)."""


def _v2_own_group(proc: Path = Path("/proc/self")) -> Path | None:
    """This process's group in the unified (v2) hierarchy, if one is mounted."""
    try:
        memberships = read_text(proc / "cgroup").splitlines()
        mounts = mount_table(read_text(proc / "mountinfo"))
    except OSError:
        return None
    path = next((line[3:] for line in memberships if line.startswith("0::")), None)
    if path is None:
        return None
    for root, mount, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        if path == root:
            return mount
        if path.startswith(root.rstrip("/") + "/"):
            return mount / path[len(root) :].strip("/")
    return None


def members(group: Path) -> list[int]:
    """Pids in `group` and every group below it."""
    found: list[int] = []
    for directory, subdirs, _ in os.walk(group):
        try:
            found.extend(int(pid) for pid in read_text(Path(directory) / "cgroup.procs").split())
        except (OSError, ValueError):
            continue
    return found


def kill_all(group: Path, *, spare: tuple[int, ...] = ()) -> int:
    """SIGKILL every process in `group` (and below) but `spare`, until none is
    left that is not spared. Returns how many were signalled."""
    if not spare and (group / "cgroup.kill").exists():
        try:
            write_text(group / "cgroup.kill", "1")
            return len(members(group))
        except OSError:
            pass
    killed: set[int] = set()
    for _ in range(KILL_ROUNDS):
        targets = [pid for pid in members(group) if pid not in spare]
        if not targets:
            break
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.001)
    return len(killed)


class RunGroup:
    """The cgroup holding this supervisor and everything it starts."""

    def __init__(self, path: Path, home: Path, version: int) -> None:
        self.path = path
        """The group."""
        self.home = home
        """Where the supervisor was before (it goes back there at the end)."""
        self.version = version

    @property
    def label(self) -> str:
        return f"cgroup v{self.version} {self.path}"

    @classmethod
    def enter(cls) -> RunGroup | None:
        """Make the run's group and move this process into it; None where no
        group can be made (then the environment token is the only tracking)."""
        if os.environ.get(DISABLE_VAR, "").lower() in ("0", "off", "no", "false"):
            return None
        places: list[tuple[int, Path]] = []
        v2 = _v2_own_group()
        if v2 is not None:
            places.append((2, v2))
        for controller in ("pids", "freezer"):
            place = locate((controller,)).get(controller)
            if place is not None and place.version == 1:
                places.append((1, place.own))
        for version, home in places:
            sweep_stale({home})
            path = home / f"{GROUP_PREFIX}{os.getpid()}{SUFFIX}"
            try:
                path.mkdir(exist_ok=True)
            except OSError:
                continue
            try:
                write_text(path / "cgroup.procs", str(os.getpid()))
            except OSError:
                _remove(path)
                continue
            return cls(path, home, version)
        return None

    def pids(self) -> list[int]:
        return members(self.path)

    def sweep(self, *, spare: tuple[int, ...] = ()) -> int:
        """SIGKILL what is left in the group but this process and `spare`."""
        return kill_all(self.path, spare=(os.getpid(), *spare))

    def leave(self, *, spare: tuple[int, ...] = ()) -> int:
        """The run is over: kill what is left in the group, move this process
        (and `spare`, helpers that live in the group) back home and remove the
        group. Returns how many were killed."""
        killed = self.sweep(spare=spare)
        self.move_home(spare=spare)
        self.remove()
        return killed

    def move_home(self, *, spare: tuple[int, ...] = ()) -> None:
        """Move this process (and `spare`) back where it was. Each move is a
        write to `cgroup.procs` the kernel may make wait (for an RCU grace
        period: ~5 ms, more on a loaded machine), with the GIL released."""
        for pid in (os.getpid(), *spare):
            try:
                write_text(self.home / "cgroup.procs", str(pid))
            except OSError:
                pass

    def remove(self) -> None:
        """Remove the group, once what was killed in it has left it."""
        # The killed may take a moment to leave the group; what is still
        # there after that is removed by a later supervisor's sweep.
        deadline = time.monotonic() + 1.0
        while not _remove(self.path) and time.monotonic() < deadline:
            time.sleep(0.005)


def _remove(path: Path) -> bool:
    for directory, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:
            return False
    return True
