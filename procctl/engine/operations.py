"""What a second invocation can do to a running supervisor: pause, resume,
kill, restart, start, scale, send, status. One method per control verb; each
returns plain data (it goes back over the control socket as JSON).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import signal
import time
from collections.abc import Iterable
from typing import Any

import psutil

from procctl import events
from procctl.config.manifest import MAX_REPLICAS, MAX_RLIMIT
from procctl.config.plan import replica_job
from procctl.engine import limits
from procctl.engine.process import Child, ProcessTree
from procctl.engine.outcome import Cut
from procctl.states import State
from procctl.engine.instance import Instance
from procctl.engine.supervisor import Supervisor
from procctl.errors import UsageError


def parse_signal(value: str | int) -> int:
    """'TERM', 'SIGTERM', 'hup' or 15 → the signal number."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        try:
            return int(signal.Signals(number))
        except ValueError:
            raise UsageError(f"unknown signal {value}") from None
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"unknown signal {value!r} (e.g. TERM, HUP, USR1, 9)") from None


class Operations:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    # ------------------------------------------------------------ naming

    def resolve(self, names: Iterable[str], *, everything: bool = False) -> list[Instance]:
        """Instances by process name (all of its instances) or instance name
        (`web.2`, `thumb[7]`). An unknown name is a UsageError listing the known."""
        if everything:
            return list(self.sup.instances)
        names = list(names)
        if not names:
            raise UsageError("name at least one process or instance (or use --all)")
        found: dict[int, Instance] = {}  # by id: linear in names and matches
        for name in names:
            matches = self.sup.find([name])
            if not matches:
                processes = list(dict.fromkeys(inst.job.process for inst in self.sup.instances))
                known = ", ".join(processes)
                raise UsageError(f"unknown process or instance {name!r}; known processes: {known}")
            for inst in matches:
                found.setdefault(id(inst), inst)
        return list(found.values())

    def _refuse_while_stopping(self) -> None:
        if self.sup.stopping:
            raise UsageError("the supervisor is stopping")

    # ------------------------------------------------------------ verbs

    def pause(self, names: list[str], everything: bool = False) -> dict[str, Any]:
        """SIGSTOP to each instance's whole tree; --all also holds the queue."""
        self._refuse_while_stopping()
        paused = []
        known = ProcessTree()
        for inst in self.resolve(names, everything=everything):
            if self._pause(inst, known):
                paused.append(inst.name)
        if everything:
            self.sup.hold_queue(True)
        return {"paused": paused, "queue_held": self.sup.queue_held}

    def _pause(self, inst: Instance, known: ProcessTree) -> bool:
        child = inst.child
        if child is None or not child.running or inst.paused or not inst.may(State.PAUSED):
            return False
        loop = asyncio.get_running_loop()
        if inst.timeout_handle is not None:
            # The job's timeout does not run while it is paused.
            inst.timeout_left_s = max(inst.timeout_handle.when() - loop.time(), 0.0)
            inst.timeout_handle.cancel()
            inst.timeout_handle = None
        if inst.probe_task is not None:
            # Nor does its readiness deadline: the probe starts afresh on resume.
            inst.probe_task.cancel()
            inst.probe_task = None
        child.send_signal(signal.SIGSTOP)
        for proc in known.descendants(child.pid):
            try:
                proc.suspend()
            except psutil.Error:
                pass
        inst.paused = True
        inst.transition(State.PAUSED)
        self.sup.bus.publish(events.Paused(inst.job.process, inst.name))
        return True

    def resume(self, names: list[str], everything: bool = False) -> dict[str, Any]:
        resumed = []
        known = ProcessTree()
        for inst in self.resolve(names, everything=everything):
            if self._resume(inst, known):
                resumed.append(inst.name)
        if everything:
            self.sup.hold_queue(False)
        return {"resumed": resumed, "queue_held": self.sup.queue_held}

    def _resume(self, inst: Instance, known: ProcessTree) -> bool:
        if not inst.paused or inst.child is None or inst.state is not State.PAUSED:
            return False
        child = self._continue(inst, known)
        loop = asyncio.get_running_loop()
        if inst.timeout_left_s is not None and child.running:
            inst.timeout_handle = loop.call_later(inst.timeout_left_s, self.sup._on_job_timeout, inst)
            inst.timeout_left_s = None
        ready_pending = inst.job.spec.ready is not None and not inst.ready_once
        if child.running:
            if ready_pending:
                self.sup.start_probe(inst)
            inst.transition(State.READY if inst.job.spec.ready and inst.ready_once else State.RUNNING)
        self.sup.bus.publish(events.Resumed(inst.job.process, inst.name))
        return True

    def _continue(self, inst: Instance, known: ProcessTree) -> Child:
        """SIGCONT to the paused tree."""
        child = inst.child
        assert child is not None
        for proc in known.descendants(child.pid):
            try:
                proc.resume()
            except psutil.Error:
                pass
        child.send_signal(signal.SIGCONT)
        inst.paused = False
        return child

    def kill(self, names: list[str], sig: str | int | None = None) -> dict[str, Any]:
        """Stop gracefully and do not restart; or with `sig`, deliver just it."""
        targets = self.resolve(names)
        if sig is not None:
            number = parse_signal(sig)
            sent = [inst.name for inst in targets if inst.child is not None and inst.child.send_signal(number)]
            return {"signalled": sent, "signal": signal.Signals(number).name}
        stopped = []
        for inst in targets:
            if inst.state.final:
                continue
            self.sup._stop_instance(inst, "killed on request")
            stopped.append(inst.name)
        return {"stopping": stopped}

    def restart(self, names: list[str]) -> dict[str, Any]:
        self._refuse_while_stopping()
        restarted = []
        for inst in self.resolve(names):
            child = inst.child
            if inst.state.final:
                self._start(inst)
            elif child is not None and child.running:
                inst.restart_requested = True
                self.sup._cut(inst, Cut.RESTART, "restart requested", "restart requested")
                if inst.paused:
                    self._continue(inst, ProcessTree())
            elif inst.state is State.BACKOFF:
                inst.wake.set()
            restarted.append(inst.name)
        return {"restarting": restarted}

    def start(self, names: list[str]) -> dict[str, Any]:
        """Start instances that have ended (or were never started)."""
        self._refuse_while_stopping()
        started, already = [], []
        for inst in self.resolve(names):
            if inst.state.final:
                self._start(inst)
                started.append(inst.name)
            else:
                already.append(inst.name)
        return {"starting": started, "already_running": already}

    def _start(self, inst: Instance) -> None:
        inst.stop_requested = False
        inst.stop_reason = ""
        inst.restart_requested = False
        inst.totals.reason = ""
        inst.transition(State.PENDING)
        self.sup.launch(inst)

    def scale(self, process: str, replicas: int) -> dict[str, Any]:
        self._refuse_while_stopping()
        if not 0 <= replicas <= MAX_REPLICAS:
            raise UsageError(f"scale: replicas must be 0 to {MAX_REPLICAS:,} (the manifest's own cap), got {replicas:,}")
        spec = self.sup.plan.manifest.processes.get(process)
        if spec is None:
            known = ", ".join(self.sup.plan.manifest.processes)
            raise UsageError(f"unknown process {process!r}; known processes: {known}")
        if spec.each is not None:
            raise UsageError(f"{process} runs one job per `each` item; it cannot be scaled")
        current = [inst for inst in self.sup.instances if inst.job.process == process and not inst.state.final]
        added, removed = [], []
        if replicas > len(current):
            # A lone instance (index 0) counts as replica 1: new ones are .2, .3...
            taken = {max(inst.job.index, 1) for inst in self.sup.instances if inst.job.process == process}
            index = 1
            while len(current) + len(added) < replicas:
                if index not in taken:
                    job = replica_job(self.sup.plan.manifest, spec, index)
                    inst = self.sup.add_instance(job)
                    self.sup.launch(inst)
                    added.append(inst.name)
                    taken.add(index)
                index += 1
        else:
            for inst in sorted(current, key=lambda i: i.job.index, reverse=True)[: len(current) - replicas]:
                self.sup._stop_instance(inst, "scaled down")
                removed.append(inst.name)
        return {"process": process, "replicas": replicas, "added": added, "removed": removed}

    def send(self, names: list[str], text: str, everything: bool = False) -> dict[str, Any]:
        data = text.encode() if text.endswith("\n") else (text + "\n").encode()
        sent = []
        for inst in self.resolve(names, everything=everything):
            if inst.child is not None and inst.child.write_stdin(data):
                sent.append(inst.name)
        return {"sent": sent}

    def shutdown(self) -> dict[str, Any]:
        self.sup.request_stop("shutdown requested")
        return {"stopping": True}

    # ------------------------------------------------------------ limits

    def limits(self, names: list[str], changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Show limits, mechanisms and usage; with `changes`, apply them to the
        live trees and to later runs first."""
        targets = self.resolve(names)
        if changes:
            parsed = _parse_limit_changes(changes)
            for inst in targets:
                self._check_lowering(inst, parsed)
            for inst in targets:
                self._apply_limits(inst, parsed)
        return {"instances": [self._limit_row(inst) for inst in targets]}

    def _check_lowering(self, inst: Instance, changes: dict[str, Any]) -> None:
        child = inst.child
        if child is None or not child.running:
            return
        for key in ("nofile", "nproc"):
            if key not in changes:
                continue
            tree = limits.tree(child.pid)
            # Each process has its own table of open files; nproc counts processes.
            used = max((_fds(proc) for proc in tree), default=0) if key == "nofile" else len(tree)
            if changes[key] < used:
                what = "files are open in one of its processes" if key == "nofile" else "processes run in its tree"
                raise UsageError(f"{inst.name}: {used} {what}, more than the new {key} limit of {changes[key]}; refused")

    def _apply_limits(self, inst: Instance, changes: dict[str, Any]) -> None:
        updates: dict[str, Any] = {}
        child = inst.child
        running = child is not None and child.running
        for key, value in changes.items():
            if key in limits.RLIMITS:
                updates[key] = (value, value)
                if running and child is not None:
                    limits.set_live_rlimit(child.pid, key, value, value)
            else:
                updates[key] = value
        inst.limits = dataclasses.replace(inst.limits, **updates)
        if running:
            self.sup.enforcer.apply(inst, set(changes))

    def _limit_row(self, inst: Instance) -> dict[str, Any]:
        child = inst.child
        running = child is not None and child.running
        row: dict[str, Any] = {"name": inst.name, "pid": child.pid if running and child else None, "limits": {}, "usage": None}
        for field in dataclasses.fields(inst.limits):
            value = getattr(inst.limits, field.name)
            if value is None:
                continue
            shown = list(value) if isinstance(value, tuple) else value
            row["limits"][field.name] = {"value": shown, "mechanism": self.sup.enforcer.describe(inst, field.name)}
        if running and child is not None:
            now = limits.usage(child.pid)
            row["usage"] = {
                "rss_bytes": now.rss_bytes,
                "cpu_time_s": now.cpu_time_s,
                "open_files": now.open_files,
                "processes": now.processes,
            }
        row["on_limit"] = inst.job.spec.on_limit
        return row

    # ------------------------------------------------------------ status

    def _pool_status(self) -> dict[str, Any]:
        pool = self.sup.pool
        plan = self.sup.plan
        if pool is None:
            return {"size": plan.max_parallel, "cap": plan.max_parallel, "auto": plan.auto, "running": 0, "waiting": 0, "schedule": plan.schedule}
        return {
            "size": pool.limit,
            "cap": pool.cap,
            "auto": pool.auto,
            "running": pool.running,
            "waiting": pool.waiting,
            "schedule": plan.schedule,
        }

    def _mechanisms(self, inst: Instance) -> dict[str, str]:
        """Which mechanism enforces each limit of an instance (for `status`)."""
        return {
            field.name: self.sup.enforcer.mechanism(inst, field.name)
            for field in dataclasses.fields(inst.limits)
            if getattr(inst.limits, field.name) is not None
        }

    def status(self) -> dict[str, Any]:
        now = time.time()
        # The sampler's latest figures: a status request never walks the
        # process table itself, however many instances run.
        rows = []
        for inst in self.sup.instances:
            child = inst.child
            running = child is not None and child.running
            pid = child.pid if running and child is not None else None
            sample = self.sup.recorder.latest(inst) if running else None
            rows.append(
                {
                    "name": inst.name,
                    "process": inst.job.process,
                    "state": str(inst.state),
                    "status": inst.result().status_text,
                    "pid": pid,
                    "uptime_s": now - child.started_at if running and child is not None else None,
                    "restarts": inst.totals.restarts,
                    "exit_code": inst.totals.exit_code,
                    "signal": inst.totals.signal,
                    "cpu_time_s": sample.cpu_time_s if sample else None,
                    "cpu_percent": sample.cpu_percent if sample else None,
                    "rss_bytes": sample.rss_bytes if sample else None,
                    "peak_rss_bytes": sample.peak_rss_bytes if sample else None,
                    "reason": inst.totals.reason,
                    "limits": self._mechanisms(inst),
                }
            )
        return {
            "manifest": str(self.sup.plan.manifest.path),
            "pid": os.getpid(),
            "max_parallel": self.sup.plan.max_parallel,
            "pool": self._pool_status(),
            "queue_held": self.sup.queue_held,
            "stopping": self.sup.stopping,
            "instances": rows,
        }


def _fds(proc: psutil.Process) -> int:
    try:
        return proc.num_fds()
    except psutil.Error:
        return 0


_LIMIT_PARSERS = {
    "memory": "size",
    "cpu_time": "duration",
    "nofile": "count",
    "nproc": "count",
    "cpu_percent": "percent",
}


def _nofile_ceiling() -> int:
    """The most open files the kernel lets a process have (fs.nr_open)."""
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def _parse_limit_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """A `limits` request's values, each checked against what the kernel
    accepts before anything changes. Raises UsageError."""
    from procctl.units import parse_duration, parse_size

    parsed: dict[str, Any] = {}
    for key, raw in changes.items():
        kind = _LIMIT_PARSERS.get(key)
        if kind is None:
            raise UsageError(f"limits: unknown limit {key!r}; known: {', '.join(_LIMIT_PARSERS)}")
        try:
            if kind == "size":
                parsed[key] = _within(parse_size(raw), 1, MAX_RLIMIT, "bytes")
            elif kind == "duration":
                seconds = parse_duration(raw)
                if not math.isfinite(seconds):
                    raise ValueError(f"expected a duration, got {raw!r}")
                parsed[key] = _within(max(int(seconds), 1), 1, MAX_RLIMIT, "seconds")
            elif kind == "count":
                if isinstance(raw, bool) or not isinstance(raw, int):
                    raise ValueError(f"expected a whole number, got {raw!r}")
                parsed[key] = _within(raw, 0, _nofile_ceiling() if key == "nofile" else MAX_RLIMIT, "")
            else:
                if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                    raise ValueError(f"expected a percentage, got {raw!r}")
                parsed[key] = float(_within(raw, 0, 100 * (os.cpu_count() or 1), "%", above=True))
        except (ValueError, OverflowError) as exc:
            raise UsageError(f"limits: {key}: {exc}") from None
    return parsed


def _within(value: Any, low: int, high: int, unit: str, *, above: bool = False) -> Any:
    if (value <= low if above else value < low) or value > high:
        lowest = f"more than {low:,}" if above else f"{low:,}"
        raise ValueError(f"must be {lowest} to {high:,}{' ' + unit if unit else ''}, got {value:,}")
    return value
