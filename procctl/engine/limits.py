"""Resource limits on process trees: kernel rlimits set between fork and exec
(with the child's entry into its cgroup), the usage of a whole tree, and CPU
throttling by duty cycles where no cgroup can hold the tree (`enforcer`
decides which).

Why a pre-exec function is safe here: it runs in the forked child before exec
and only calls `setrlimit`/`setpriority` and writes `0` to cgroup files the
parent opened, all on values prepared in the parent. It
imports nothing, takes no lock and logs nothing, so it cannot deadlock on a lock
another thread held at fork time; the forking thread holds the GIL across it.
The cost is that the child is forked rather than vforked, which is why it is
only used for processes that have limits.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from procctl.engine.lazypsutil import psutil

from procctl.config import rlimits
from procctl.config.manifest import Limits
from procctl.engine.tree import ProcessTree
from procctl.errors import SpawnError, UsageError

RLIMITS = rlimits.RESOURCES
"""Manifest key → kernel resource."""

THROTTLE_PERIOD_S = 0.1
"""Length of one run/stop cycle of the CPU throttle."""


def rlimit_pairs(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    pairs = []
    for key, res in RLIMITS.items():
        value = getattr(limits, key)
        if value is not None:
            pairs.append((res, (int(value[0]), int(value[1]))))
    return pairs


_CHECKED_MAX = 256
"""Distinct limits kept checked, at most (`procctl limits` may set any)."""
_checked: dict[Limits, list[tuple[int, tuple[int, int]]]] = {}


def _checked_pairs(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    """`rlimit_pairs`, each under its ceiling (else SpawnError), looked at
    once per distinct value rather than at every spawn."""
    pairs = _checked.get(limits)
    if pairs is None:
        for key in RLIMITS:
            value = getattr(limits, key)
            refusal = rlimits.over_ceiling(key, value) if value is not None else None
            if refusal is not None:
                raise SpawnError(f"cannot set the limit {refusal}")
        pairs = rlimit_pairs(limits)
        if len(_checked) >= _CHECKED_MAX:
            _checked.clear()
        _checked[limits] = pairs
    return pairs


def preexec(limits: Limits, nice: int | None, join_fds: list[int] | None = None) -> Callable[[], None] | None:
    """The function the child runs between fork and exec, or None if there is
    nothing to set (then the fast vfork path stays in use). `join_fds` are
    `cgroup.procs` files the child joins by writing `0` (itself). A limit
    the child could not set is a SpawnError naming it, raised here, before
    the fork."""
    pairs = _checked_pairs(limits)
    fds = tuple(join_fds or ())
    if not pairs and nice is None and not fds:
        return None
    setrlimit, setpriority, prio, write = resource.setrlimit, os.setpriority, os.PRIO_PROCESS, os.write

    def apply() -> None:
        for fd in fds:
            write(fd, b"0")
        for res, value in pairs:
            setrlimit(res, value)
        if nice is not None:
            setpriority(prio, 0, nice)

    return apply


def tree(pid: int) -> list[psutil.Process]:
    """The live tree rooted at `pid` (the root first), from one pass."""
    return ProcessTree().members(pid)


def tree_rss(pid: int) -> int:
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def open_files(proc: psutil.Process) -> int:
    try:
        return proc.num_fds()
    except psutil.Error:
        return 0


class Usage(NamedTuple):
    rss_bytes: int
    cpu_time_s: float
    open_files: int
    processes: int


def usage(pid: int) -> Usage:
    rss, cpu, fds, count = 0, 0.0, 0, 0
    for proc in tree(pid):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
                fds += proc.num_fds()
                count += 1
        except psutil.Error:
            pass
    return Usage(rss, cpu, fds, count)


def set_live_rlimits(pid: int, changes: Mapping[str, Any]) -> None:
    """Apply the rlimits among `changes` ((soft, hard) pairs) to every process
    of a live tree (prlimit)."""
    pairs = [(RLIMITS[key], value) for key, value in changes.items() if key in RLIMITS]
    if not pairs:
        return
    for proc in tree(pid):
        for resource_id, value in pairs:
            try:
                proc.rlimit(resource_id, value)
            except psutil.Error:
                pass


def check_lowering(name: str, pid: int, changes: Mapping[str, Any]) -> None:
    """Refuse a `nofile` or `nproc` below what the live tree rooted at `pid` uses."""
    for key in ("nofile", "nproc"):
        if key not in changes:
            continue
        members = tree(pid)
        # Each process has its own table of open files; nproc counts processes.
        used = max((open_files(proc) for proc in members), default=0) if key == "nofile" else len(members)
        soft = changes[key][0]
        if soft < used:
            what = "files are open in one of its processes" if key == "nofile" else "processes run in its tree"
            raise UsageError(f"{name}: {used} {what}, more than the new {key} limit of {soft}; refused")


class CpuThrottle:
    """Keeps a tree near `percent` of one core by SIGSTOP/SIGCONT duty cycles
    of its process group. Used where cgroups' cpu.max cannot be."""

    def __init__(self, pgid: int, percent: float, is_paused: Callable[[], bool]) -> None:
        self.pgid = pgid
        self.percent = percent
        self._is_paused = is_paused
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._cycle())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if not self._is_paused():
            self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> bool:
        try:
            os.killpg(self.pgid, sig)
            return True
        except OSError:
            return False

    async def _cycle(self) -> None:
        while True:
            share = min(max(self.percent / 100.0, 0.01), 1.0)
            if share >= 1.0:
                await asyncio.sleep(THROTTLE_PERIOD_S)
                continue
            await asyncio.sleep(THROTTLE_PERIOD_S * share)
            if self._is_paused():
                await asyncio.sleep(THROTTLE_PERIOD_S)
                continue
            if not self._signal(signal.SIGSTOP):
                return
            await asyncio.sleep(THROTTLE_PERIOD_S * (1 - share))
            if self._is_paused():
                continue
            if not self._signal(signal.SIGCONT):
                return
