"""Which instance a process belongs to, told from the kernel's record of it.

A notification or a control request names its sender only through the
credentials the kernel attaches (a pid); what the sender says of itself is
never taken for who it is. A pid belongs to an instance when the instance's
process is the pid itself, one of its ancestors, or the leader of its
session: every instance runs in a session of its own, so a descendant that
was re-parented away when its parent ended still belongs by its session,
and only a process that also left the session (a daemon's double fork)
needs its ancestry to still lead back.

An instance's process stays ours until the supervisor reaps it, so its pid
(and with it a session id of that number) cannot be taken by a stranger
while the instance is looked up by it.
"""

from __future__ import annotations

from collections.abc import Collection

MAX_DEPTH = 1024
"""Ancestors followed at most (a chain of parents is never this long)."""


def parent_and_session(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(parent pid, session id) of a process, or None when it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read(4096)
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: cut after
    # its last ')'. Fields 3.. follow: state, ppid, pgrp, session.
    fields = data[data.rfind(b")") + 2 :].split()
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
