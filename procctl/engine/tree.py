"""Process trees: who descends from whom, and whose tree a process is in.

Down: `members` is the one walk of a tree, over a map of parent → children;
`ProcessTree` makes that map with psutil from one pass over the process
table (the metrics sampler makes its own from /proc/PID/stat, whose figures
it reads in the same pass, parsed by `stat_fields`). A tree is found through
parents, so it includes descendants that left the process group (setsid)
and misses those re-parented away (to init) — the guardian's token sweep
finds those.

Up: `owner` says which instance a process belongs to, told from the
kernel's record of it. A notification or a control request names its sender
only through the credentials the kernel attaches (a pid); what the sender
says of itself is never taken for who it is. A pid belongs to an instance
when the instance's process is the pid itself, one of its ancestors, or the
leader of its session: every instance runs in a session of its own, so a
descendant that was re-parented away when its parent ended still belongs by
its session, and only a process that also left the session (a daemon's
double fork) needs its ancestry to still lead back. An instance's process
stays ours until the supervisor reaps it, so its pid (and with it a session
id of that number) cannot be taken by a stranger while the instance is
looked up by it.

Groups: every child is the leader of its own process group, so a signal
reaches its tree through the group (`signal_group`), and the descendants
that left the group one by one (`act_on`); `group_lives` says whether a
member of a group is still alive, zombies aside.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from procctl.engine.lazypsutil import psutil


def members(children: Mapping[int, Iterable[int]], root: int) -> Iterator[int]:
    """`root` and every pid that descends from it."""
    stack = [root]
    while stack:
        pid = stack.pop()
        yield pid
        stack.extend(children.get(pid, ()))


class ProcessTree:
    """Every process of the system and its parent, read once.

    Acting on many trees at the same moment (stopping 200 instances) takes
    one of these instead of a pass over /proc per tree (0.6 s of the
    supervisor's time at Ctrl-C when it was one pass each)."""

    def __init__(self) -> None:
        self.processes: dict[int, psutil.Process] = {}
        self.children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):
            self.processes[proc.pid] = proc
            ppid = proc.info["ppid"]
            if ppid is not None:
                self.children.setdefault(ppid, []).append(proc.pid)

    def members(self, pid: int) -> list[psutil.Process]:
        """The process `pid` (when it lives) and every descendant."""
        return [self.processes[member] for member in members(self.children, pid) if member in self.processes]

    def descendants(self, pid: int) -> list[psutil.Process]:
        return [proc for proc in self.members(pid) if proc.pid != pid]


MAX_DEPTH = 1024
"""Ancestors followed at most (a chain of parents is never this long)."""


def stat_fields(data: bytes) -> list[bytes]:
    """/proc/PID/stat's fields from the third on (state, ppid, pgrp, session,
    …). The command name (field 2) may hold spaces and parentheses: it is
    cut after its last ')'."""
    return data[data.rfind(b")") + 2 :].split()


def parent_and_session(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(parent pid, session id) of a process, or None when it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            fields = stat_fields(f.read(4096))
    except OSError:
        return None
    if len(fields) < 4:
        return None
    return int(fields[1]), int(fields[3])


def owner(pid: int, roots: Collection[int], proc: str = "/proc") -> int | None:
    """The root in `roots` whose tree `pid` belongs to, or None."""
    current = pid
    for _ in range(MAX_DEPTH):
        if current in roots:
            return current
        if current <= 1:
            return None
        found = parent_and_session(current, proc)
        if found is None:
            return None
        parent, session = found
        if session in roots:
            return session
        current = parent
    return None


def signal_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it is already gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def group_lives(pgid: int) -> bool:
    """A member of the process group is alive (zombies, which may wait long
    for a reaper that never comes, do not count)."""
    if not group_alive(pgid):
        return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = stat_fields(f.read())
        except OSError:
            continue
        # State, ppid, pgrp.
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def lives(proc: psutil.Process) -> bool:
    """The process runs (a zombie does not)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def act_on(procs: Iterable[psutil.Process], act: Callable[[psutil.Process], None]) -> None:
    """`act` on each process, those that are gone meanwhile aside."""
    for proc in procs:
        try:
            act(proc)
        except psutil.Error:
            pass
