"""The kernel's resource limits a manifest can set: which resource each key
is, and how high this process may set it.

An unprivileged process may lower a hard limit but never raise it; even root
cannot take `nofile` past fs.nr_open. The loader refuses a value over the
ceiling (`procctl check` says so), and the engine checks again before a spawn,
where the limits may have been changed live: either way one line that names
the limit, never a failure inside the forked child.
"""

from __future__ import annotations

import os
import resource

RESOURCES = {
    "address_space": resource.RLIMIT_AS,
    "cpu_time": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}
"""Manifest key → kernel resource."""


def nofile_ceiling() -> int:
    """The most open files the kernel lets a process have (fs.nr_open)."""
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _privileged() -> bool:
    """May raise hard limits (CAP_SYS_RESOURCE; root has it)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def ceiling(key: str) -> int | None:
    """The highest hard limit this process may set for `key`; None: no bound."""
    bound: int | None = None
    if not _privileged():
        hard = resource.getrlimit(RESOURCES[key])[1]
        bound = None if hard == resource.RLIM_INFINITY else hard
    if key == "nofile":
        bound = min(bound, nofile_ceiling()) if bound is not None else nofile_ceiling()
    return bound


def over_ceiling(key: str, pair: tuple[int, int]) -> str | None:
    """Why (soft, hard) cannot be set for `key`, or None when it can."""
    top = ceiling(key)
    if top is None or pair[1] <= top:
        return None
    why = "the kernel's fs.nr_open" if key == "nofile" and top == nofile_ceiling() else "the hard limit this user may not raise"
    return f"{key} {pair[1]:,} is over {top:,} ({why})"
