"""What a second invocation can do to a running supervisor: pause, resume,
kill, restart, start, scale, send, status, shared memory. One method per control verb; each
returns plain data (it goes back over the control socket as JSON).
"""

from __future__ import annotations

import base64
import binascii
import os
import signal
import time
from collections.abc import Iterable, Sequence
from typing import Any

from procctl import events
from procctl.config import values
from procctl.config.manifest import MAX_POOL, MAX_REPLICAS
from procctl.config.plan import check_ports, lowest_free, replica_job
from procctl.config.select import resolve
from procctl.engine import limits
from procctl.engine.ipc import region_users
from procctl.engine.runner import InstanceRunner
from procctl.engine.supervisor import Supervisor
from procctl.engine.tree import ProcessTree
from procctl.errors import UsageError


REMOTE_MECHANISM = "held on the worker that runs it, by the same means as here; a change applies to its next runs"


class Operations:
    """The face of a running supervisor for the control plane (and any UI):
    every verb is a method here, and each acts through the runners' and the
    supervisor's public methods."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor

    # ------------------------------------------------------------ naming

    def resolve(self, names: Iterable[str], *, everything: bool = False) -> list[InstanceRunner]:
        return self.sup.resolve(names, everything=everything)

    def _refuse_while_stopping(self) -> None:
        if self.sup.halted is not None:
            raise UsageError(f"everything was stopped after {self.sup.halted}: 'procctl down', then 'procctl up -d' again")
        if self.sup.stopping:
            raise UsageError("the supervisor is stopping")

    # ------------------------------------------------------------ verbs

    def ping(self) -> dict[str, Any]:
        return {"pong": True, "pid": os.getpid()}

    def pause(self, names: Sequence[str] = (), everything: bool = False) -> dict[str, Any]:
        """SIGSTOP to each instance's whole tree; --all also holds the queue."""
        self._refuse_while_stopping()
        known = ProcessTree()
        paused = [runner.name for runner in self.resolve(names, everything=everything) if runner.pause(known)]
        if everything:
            self.sup.admission.hold(True)
        return {"paused": paused, "queue_held": self.sup.admission.held}

    def resume(self, names: Sequence[str] = (), everything: bool = False) -> dict[str, Any]:
        known = ProcessTree()
        resumed = [runner.name for runner in self.resolve(names, everything=everything) if runner.resume(known)]
        if everything:
            self.sup.admission.hold(False)
        return {"resumed": resumed, "queue_held": self.sup.admission.held}

    def kill(self, names: Sequence[str] = (), sig: str | int | None = None) -> dict[str, Any]:
        """Stop gracefully and do not restart; or with `sig`, deliver just it."""
        targets = self.resolve(names)
        if sig is not None:
            try:
                number = values.signal_number(sig)
            except ValueError as exc:
                raise UsageError(f"kill: {exc}") from None
            sent = [runner.name for runner in targets if runner.signal(number)]
            return {"signalled": sent, "signal": signal.Signals(number).name}
        return {"stopping": [runner.name for runner in targets if runner.stop("killed on request")]}

    def restart(self, names: Sequence[str] = ()) -> dict[str, Any]:
        self._refuse_while_stopping()
        targets = self.resolve(names)
        for runner in targets:
            runner.restart()
        return {"restarting": [runner.name for runner in targets]}

    def start(self, names: Sequence[str] = ()) -> dict[str, Any]:
        """Start instances that have ended (or were never started)."""
        self._refuse_while_stopping()
        started, already = [], []
        for runner in self.resolve(names):
            (started if runner.start() else already).append(runner.name)
        return {"starting": started, "already_running": already}

    def scale(self, process: str, replicas: int) -> dict[str, Any]:
        """Run `replicas` instances of a process. Up: the lowest replica
        numbers not running are handed out (an instance that had one runs
        again, under its own name); down: the highest numbered stop for
        good. PORT is checked on the numbers handed out."""
        self._refuse_while_stopping()
        if not 0 <= replicas <= MAX_REPLICAS:
            raise UsageError(f"scale: replicas must be 0 to {MAX_REPLICAS:,} (the manifest's own cap), got {replicas:,}")
        (spec,) = resolve([process], {name: (spec,) for name, spec in self.sup.plan.manifest.processes.items()})
        if spec.each is not None:
            raise UsageError(f"{process} runs one job per `each` item; it cannot be scaled")
        # Wanted and not ended: one scaled down that is still stopping is
        # not counted, and its number is free again.
        current = [runner for runner in self.sup.instances.live(process) if not runner.state.final]
        added, removed = [], []
        if replicas > len(current):
            numbers = lowest_free({runner.job.replica for runner in current}, replicas - len(current))
            check_ports("scale", spec, numbers)
            for number in numbers:
                added.append(self.sup.add(replica_job(self.sup.plan.manifest, spec, number), reason="scaled up").name)
        else:
            for runner in sorted(current, key=lambda r: r.job.index, reverse=True)[: len(current) - replicas]:
                runner.retire("scaled down")
                removed.append(runner.name)
        return {"process": process, "replicas": replicas, "added": added, "removed": removed}

    def pool(self, size: int | None = None) -> dict[str, Any]:
        """The pool; with `size`, resized for what starts from now on."""
        if size is not None:
            self._refuse_while_stopping()
            if not 1 <= size <= MAX_POOL:
                raise UsageError(f"pool: size must be 1 to {MAX_POOL:,}, got {size:,}")
            self.sup.admission.resize(size)
        return self._pool_status()

    def send(self, names: Sequence[str] = (), text: str = "", everything: bool = False, sender_pid: int = 0) -> dict[str, Any]:
        """Write a line to each instance's stdin. `sender_pid`: the process
        that asked, as the kernel says; when it belongs to an instance, that
        instance is the message's sender, and `--all` leaves it out."""
        data = text.encode() if text.endswith("\n") else (text + "\n").encode()
        sender = self.sup.ipc.owner_of(sender_pid) if sender_pid > 0 else None
        line = text.rstrip("\n")
        sent, unread = [], []
        for runner in self.resolve(names, everything=everything):
            if (everything and runner is sender) or runner.child is None or not runner.child.running:
                continue
            if runner.send(data):
                sent.append(runner.name)
                self.sup.bus.publish(events.Message(runner.process, runner.name, text=line, sender=sender.name if sender else None))
            else:
                unread.append(runner.name)
        reply: dict[str, Any] = {"sent": sent, "from": sender.name if sender else None}
        if unread:
            reply["not_read"] = unread
        return reply

    def reload(self, dry_run: bool = False) -> dict[str, Any]:
        """Apply the edited manifest (or, with `dry_run`, say what that would
        do). An invalid manifest is refused with its file:line:key error and
        nothing changes."""
        self._refuse_while_stopping()
        plan = self.sup.edits.reload(dry_run=dry_run)
        return {
            "dry_run": dry_run,
            "processes": [step.record() for step in plan.steps],
            "settings": plan.settings,
            "notes": plan.notes,
        }

    def shutdown(self) -> dict[str, Any]:
        self.sup.request_stop("shutdown requested")
        return {"stopping": True}

    # ------------------------------------------------------------ limits

    def limits(self, names: Sequence[str] = (), changes: dict[str, Any] | None = None) -> dict[str, Any]:
        """Show limits, mechanisms and usage; with `changes`, apply them to the
        live trees and to later runs first."""
        targets = self.resolve(names)
        if changes:
            parsed = _parse_limit_changes(changes)
            for runner in targets:
                runner.check_limits(parsed)
            for runner in targets:
                runner.set_limits(parsed)
        return {"instances": [self._limit_row(runner) for runner in targets]}

    def _limit_row(self, runner: InstanceRunner) -> dict[str, Any]:
        child = runner.child
        running = child is not None and child.running
        row: dict[str, Any] = {"name": runner.name, "pid": child.pid if running and child else None, "limits": {}, "usage": None}
        for field, value in runner.limits._asdict().items():
            if value is None:
                continue
            shown = list(value) if isinstance(value, tuple) else value
            mechanism = REMOTE_MECHANISM if runner.remote else self.sup.enforcer.describe(runner, field)
            row["limits"][field] = {"value": shown, "mechanism": mechanism}
        if running and child is not None and not runner.remote:
            now = limits.usage(child.pid)
            row["usage"] = {
                "rss_bytes": now.rss_bytes,
                "cpu_time_s": now.cpu_time_s,
                "open_files": now.open_files,
                "processes": now.processes,
            }
        row["on_limit"] = runner.job.spec.on_limit
        return row

    # ------------------------------------------------------------ status

    def _pool_status(self) -> dict[str, Any]:
        pool = self.sup.admission.pool
        plan = self.sup.plan
        if pool is None:
            return {"size": plan.max_parallel, "cap": plan.max_parallel, "auto": plan.auto, "running": 0, "waiting": 0, "schedule": plan.schedule}
        return {
            "size": pool.limit,
            "cap": pool.cap,
            "auto": pool.auto,
            "running": pool.running,
            # (A big pool's items wait in its feeder, not at the pool.)
            "waiting": pool.waiting + self.sup.pools.queued,
            "schedule": plan.schedule,
        }

    def _mechanisms(self, runner: InstanceRunner) -> dict[str, str]:
        """Which mechanism enforces each limit of an instance (for `status`)."""
        return {
            field: "worker" if runner.remote else self.sup.enforcer.mechanism(runner, field)
            for field, value in runner.limits._asdict().items()
            if value is not None
        }

    def subscribe(self) -> dict[str, Any]:
        """The snapshot a subscriber starts from (events follow on its
        connection, control/subscription.py): the status, and what a view
        needs of each instance beyond it — its log file, and whether it is one
        job of an `each` process, and whether the pool bounds it."""
        instances = [
            {
                "name": runner.name, "process": runner.process, "log": str(runner.log_path or ""),
                "each": runner.job.item is not None, "pooled": runner.job.pooled,
            }  # fmt: skip
            for runner in self.sup.runners
        ]
        return {"status": self.status(), "instances": instances}

    def status(self) -> dict[str, Any]:
        now = time.time()
        # The sampler's latest figures: a status request never walks the
        # process table itself, however many instances run.
        rows = []
        for runner in self.sup.runners:
            child = runner.child
            running = child is not None and child.running
            sample = self.sup.recorder.latest(runner) if running else None
            totals = runner.totals
            rows.append(
                {
                    "name": runner.name,
                    "process": runner.process,
                    "state": str(runner.state),
                    "pid": child.pid if running and child is not None else None,
                    "uptime_s": now - child.started_at if running and child is not None else None,
                    "restarts": totals.restarts,
                    "exit_code": totals.exit_code,
                    "signal": totals.signal,
                    "cpu_time_s": sample.cpu_time_s if sample else None,
                    "cpu_percent": sample.cpu_percent if sample else None,
                    "rss_bytes": sample.rss_bytes if sample else None,
                    "peak_rss_bytes": sample.peak_rss_bytes if sample else None,
                    "reason": totals.reason,
                    "limits": self._mechanisms(runner),
                    "memory_basis": "pss" if runner.job.spec.shared else "rss",
                    **self.sup.ipc.describe(runner),
                }
            )
        return {
            "manifest": str(self.sup.plan.manifest.path),
            "pid": os.getpid(),
            "max_parallel": self.sup.plan.max_parallel,
            "pool": self._pool_status(),
            "queue_held": self.sup.admission.held,
            "stopping": self.sup.stopping and self.sup.halted is None,
            "halted": self.sup.halted,
            "instances": rows,
            "shared": [{"name": region.name, "size_bytes": region.size, "resident_bytes": region.resident_bytes} for region in self.sup.ipc.regions],
        }

    # ------------------------------------------------------------ shared memory

    def shm(self, op: str, name: str = "", offset: int = 0, length: int = 0, data: str = "") -> dict[str, Any]:
        """`ls`: each region, its figures, and which instances use it (and map
        it now). `read` / `write`: bytes of region `name` at `offset`."""
        regions = self.sup.ipc.regions
        if op == "ls":
            users = []
            known = ProcessTree()
            for runner in self.sup.runners:
                if not runner.job.spec.shared:
                    continue
                child = runner.child
                pid = child.pid if child is not None and child.running else None
                tree = [proc.pid for proc in known.members(pid)] if pid else []
                users.append((runner.name, runner.job.spec, pid, tree))
            return {"regions": region_users(regions, users)}
        if op == "read":
            return {"name": name, "offset": offset, "data": base64.b64encode(regions.get(name).read(offset, length)).decode()}
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError("shm: 'data' is not base64") from None
        return {"name": name, "offset": offset, "written": regions.get(name).write(offset, raw)}


def _parse_limit_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """A `limits` request's values, each checked against what the kernel
    accepts before anything changes. Raises UsageError."""
    parsed: dict[str, Any] = {}
    for key, raw in changes.items():
        if key not in values.LIVE_LIMITS:
            raise UsageError(f"limits: unknown limit {key!r}; known: {', '.join(values.LIVE_LIMITS)}")
        try:
            parsed[key] = values.limit(key, raw)
        except (ValueError, OverflowError) as exc:
            raise UsageError(f"limits: {key}: {exc}") from None
    return parsed
