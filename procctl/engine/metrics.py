"""Resource use of each instance's whole process tree, sampled every
`metrics_interval`: CPU %, CPU time, RSS, I/O bytes, threads, descendants.

Each interval the `Sampler` reads every tracked tree in one pass over the
process table (`proctable`) and folds what it saw into each run's
`RunMeter`. CPU % is the change of a tree's CPU time over the interval, so
short-lived children (a compiler under `make`) are counted too. When a run
ends, the figures its reaping reported (`wait4`) complete what the last
sample saw.

`Recorder` ties the sampler to the supervisor: it tracks each run, publishes
`Sample` events, folds each run's figures into its instance's totals and hands
one row per run to the history database.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from procctl import events
from procctl.bus import Bus
from procctl.engine.history import History, RunRow, command_text
from procctl.engine.proctable import ProcessTable, TreeUsage, default_table
from procctl.states import State

if TYPE_CHECKING:
    from procctl.config.plan import Plan
    from procctl.engine.child import ChildProcess, Exit
    from procctl.engine.run import Instance
    from procctl.engine.store import StateDir


MEAN_CPU_MIN_S = 0.05
"""Below this much wall time, CPU time over wall time is noise (the clock
starts after the spawn, the rusage counts the spawn): a 0.2 ms job showed
616 %. No mean CPU % for such runs."""


# ------------------------------------------------------------- one run


class RunMeter:
    """Figures of one run of one instance, updated by every sample."""

    __slots__ = ("process", "instance", "pid", "began", "last_cpu_s", "last_at", "cpu_time_s", "peak_rss_bytes", "last", "proportional")

    def __init__(self, process: str, instance: str, pid: int, began: float, proportional: bool = False) -> None:
        self.proportional = proportional
        """Its memory is counted as PSS (it maps shared regions)."""
        self.process = process
        self.instance = instance
        self.pid = pid
        self.began = began
        """Monotonic time of the start: the baseline of the first CPU %."""
        self.last_cpu_s = 0.0
        self.last_at = began
        self.cpu_time_s = 0.0
        self.peak_rss_bytes = 0
        self.last: events.Sample | None = None

    def fold(self, usage: TreeUsage, now: float) -> events.Sample:
        # A member re-parented away from the tree takes its CPU time with it:
        # the total may fall; the run's CPU time never does.
        elapsed = now - self.last_at
        delta = max(usage.cpu_time_s - self.last_cpu_s, 0.0)
        percent = 100.0 * delta / elapsed if elapsed > 0 else 0.0
        self.last_cpu_s = usage.cpu_time_s
        self.last_at = now
        self.cpu_time_s = max(self.cpu_time_s, usage.cpu_time_s)
        self.peak_rss_bytes = max(self.peak_rss_bytes, usage.rss_bytes)
        self.last = events.Sample(
            self.process,
            self.instance,
            pid=self.pid,
            cpu_percent=round(percent, 1),
            cpu_time_s=round(self.cpu_time_s, 3),
            rss_bytes=usage.rss_bytes,
            peak_rss_bytes=self.peak_rss_bytes,
            read_bytes=usage.read_bytes,
            write_bytes=usage.write_bytes,
            threads=usage.threads,
            children=usage.children,
        )
        return self.last

    def close(self, reaped: resource.struct_rusage | None) -> events.Sample:
        """The final figures: the last sample completed by what the reaping
        reported (the CPU time of the root and of every descendant it waited
        for, up to its very end).

        The reaping's `ru_maxrss` is not used: a child forked from procctl
        starts from procctl's own high-water mark, which exec does not reset,
        so it would report procctl's size for every small job."""
        if reaped is not None:
            self.cpu_time_s = max(self.cpu_time_s, reaped.ru_utime + reaped.ru_stime)
        last = self.last
        return events.Sample(
            self.process,
            self.instance,
            pid=self.pid,
            cpu_percent=last.cpu_percent if last else 0.0,
            cpu_time_s=round(self.cpu_time_s, 3),
            rss_bytes=0,
            peak_rss_bytes=self.peak_rss_bytes,
            read_bytes=last.read_bytes if last else None,
            write_bytes=last.write_bytes if last else None,
            threads=0,
            children=0,
            final=True,
        )


class Sampler:
    """Samples every tracked run each `interval_s` and publishes a `Sample` per run."""

    def __init__(
        self,
        interval_s: float,
        publish: Callable[[events.Event], None],
        table: ProcessTable | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.interval_s = max(interval_s, 0.05)
        self._publish = publish
        self._table = table or default_table()
        self._clock = clock
        self._on_tick = on_tick
        self._runs: dict[int, RunMeter] = {}
        self._task: asyncio.Task[None] | None = None

    def track(self, process: str, instance: str, pid: int, *, proportional: bool = False) -> RunMeter:
        """Sample this run from now on; `proportional`: count its memory as
        PSS (it maps shared regions, which must count once in all)."""
        meter = RunMeter(process, instance, pid, self._clock(), proportional)
        self._runs[pid] = meter
        return meter

    def untrack(self, meter: RunMeter) -> None:
        if self._runs.get(meter.pid) is meter:
            del self._runs[meter.pid]

    def sample_now(self) -> list[events.Sample]:
        runs = list(self._runs.values())
        if not runs:
            return []
        return self._fold(runs, self._table.sample(*_roots(runs)))

    def _fold(self, runs: list[RunMeter], usage: dict[int, TreeUsage]) -> list[events.Sample]:
        now = self._clock()
        samples = []
        for meter in runs:
            seen = usage.get(meter.pid)
            # A run that ended while its tree was read has had its final sample.
            if seen is not None and self._runs.get(meter.pid) is meter:
                sample = meter.fold(seen, now)
                samples.append(sample)
                self._publish(sample)
        return samples

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            runs = list(self._runs.values())
            if runs:
                # The pass over /proc runs off the loop: at a thousand trees it
                # takes tens of milliseconds, that keys in the live view, the
                # control socket and the children's output would wait for.
                self._fold(runs, await asyncio.to_thread(self._table.sample, *_roots(runs)))
            if self._on_tick is not None:
                self._on_tick()


def _roots(runs: list[RunMeter]) -> tuple[list[int], list[int]]:
    """What a table samples: every run's root, and those counted as PSS."""
    return [meter.pid for meter in runs], [meter.pid for meter in runs if meter.proportional]


# ------------------------------------------------------------- recorder


class Recorder:
    """The supervisor's metrics and history: a sampler over every running
    instance, the figures of each run folded into its result, and one
    history row per run."""

    def __init__(
        self,
        plan: Plan,
        bus: Bus,
        state_dir: StateDir,
        *,
        history: bool = True,
        on_sample: Callable[[Instance, events.Sample], None] | None = None,
    ) -> None:
        self._bus = bus
        self._manifest = str(plan.manifest.path)
        self._on_sample = on_sample
        """Called with each sample of a running instance (the memory watchdog)."""
        self._by_pid: dict[int, Instance] = {}
        self.sampler = Sampler(plan.manifest.settings.metrics_interval_s, self._publish, on_tick=self._flush)
        self.history = History(state_dir.database, self._warn) if history else None
        self.run_id = f"{int(time.time())}-{os.getpid()}"
        """This run, as its history rows name it (their `session`)."""
        self._meters: dict[Instance, RunMeter] = {}

    def _publish(self, sample: events.Event) -> None:
        self._bus.publish(sample)
        if self._on_sample is not None and isinstance(sample, events.Sample):
            inst = self._by_pid.get(sample.pid)
            if inst is not None:
                self._on_sample(inst, sample)

    def _warn(self, message: str) -> None:
        self._bus.publish(events.Notice("procctl", "procctl", message=message, level="warning"))

    def _flush(self) -> None:
        if self.history is not None:
            self.history.flush()

    def start(self) -> None:
        # The history opens with its first write (the first run's row), not
        # here: opening it (sqlite3 with it) cost ~2.5 ms before the first spawn.
        self.sampler.start()

    def close(self) -> None:
        self.sampler.stop()
        if self.history is not None:
            self.history.close()

    def latest(self, inst: Instance) -> events.Sample | None:
        """The last sample of the instance's current run, if it had one."""
        meter = self._meters.get(inst)
        return meter.last if meter is not None else None

    def started(self, inst: Instance, child: ChildProcess, *, sampled: bool = True) -> None:
        """A run began: sample its tree from now on, or (`sampled` false: it
        runs elsewhere) take the figures it reports (`measured`)."""
        if not sampled:
            self._meters[inst] = RunMeter(inst.job.process, inst.name, child.pid, time.monotonic())
            return
        self._meters[inst] = self.sampler.track(inst.job.process, inst.name, child.pid, proportional=bool(inst.job.spec.shared))
        self._by_pid[child.pid] = inst

    def measured(self, inst: Instance, usage: TreeUsage) -> None:
        """What a run elsewhere measured of its own tree: a `Sample`, as the
        sampler would have made."""
        meter = self._meters.get(inst)
        if meter is None:
            return
        sample = meter.fold(usage, time.monotonic())
        self._bus.publish(sample)
        if self._on_sample is not None:
            self._on_sample(inst, sample)

    def ended(self, inst: Instance, child: ChildProcess, exit: Exit, state: State, run_s: float) -> None:
        """A run ended (`state`: as `outcome.judge` said): its final `Sample`,
        its figures into the totals, its history row."""
        meter = self._meters.pop(inst, None)
        if meter is None:
            return
        if self._by_pid.get(child.pid) is inst:
            del self._by_pid[child.pid]
        self.sampler.untrack(meter)
        final = meter.close(exit.usage)
        self._bus.publish(final)
        result = inst.totals
        result.cpu_time_s = (result.cpu_time_s or 0.0) + meter.cpu_time_s
        if meter.peak_rss_bytes:
            result.peak_rss_bytes = max(result.peak_rss_bytes or 0, meter.peak_rss_bytes)
        if result.duration_s and result.duration_s >= MEAN_CPU_MIN_S:
            result.mean_cpu_percent = 100.0 * result.cpu_time_s / result.duration_s
        if self.history is not None:
            cmd = inst.job.cmd
            self.history.add(
                RunRow(
                    manifest=self._manifest,
                    process=inst.job.process,
                    instance=inst.name,
                    item=inst.job.item,
                    command=command_text(cmd),
                    session=self.run_id,
                    started_at=child.started_at,
                    ended_at=exit.ended_at,
                    status=str(state),
                    exit_code=result.exit_code,
                    signal=result.signal,
                    duration_s=run_s,
                    peak_rss_bytes=meter.peak_rss_bytes or None,
                    cpu_time_s=meter.cpu_time_s,
                    restarts=result.restarts,
                )
            )
