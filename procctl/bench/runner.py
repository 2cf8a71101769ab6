"""Timing commands: warmup runs, then timed runs, up to `parallel` in flight.

Each run is the engine's `Child`: its own session and process group, with
stdin, stdout and stderr on /dev/null. Its wall time runs from just before
the spawn to the moment its exit is seen (a pidfd turning readable); its
user and system CPU time come from `wait4` of the child, which includes
every descendant it waited for; the
peak RSS of its whole tree comes from the engine's process table, sampled in
a thread every `sample_interval_s` (a run shorter than that may have none).
When the child has exited, whatever it left in its group is SIGKILLed, so that
one run's leftovers never weigh on the next.

A command run through a shell pays for the shell's own start. As hyperfine
does, that cost is measured first (`SHELL -c ''`, many times) and its mean
wall, user and system times are subtracted from every run of such a command
(never below zero).

The runner never prints: progress goes to a callback, results come back as
data. A failing run (non-zero exit or a signal) stops the benchmark unless
`ignore_failure`; the result then says why in `failure`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from procctl.bench import stats
from procctl.bench.result import (
    BenchmarkError,
    BenchmarkResult,
    Command,
    CommandResult,
    Interrupted,
    Options,
    Progress,
    RunFigures,
    command_result,
    signal_name,
)
from procctl.engine.proctable import ProcessTable, default_table
from procctl.engine.process import Child
from procctl.engine.signals import SignalCapture

SHELL_PROBE_RUNS = 50
"""Runs of `SHELL -c ''` whose mean is the shell's start-up cost."""


@dataclasses.dataclass(slots=True)
class _Raw:
    began: float
    ended: float
    """perf_counter just before the spawn, and when the exit was seen."""
    started_at: float
    ended_at: float
    returncode: int
    """The exit code, or -N for signal N."""
    user_s: float
    system_s: float
    peak: int | None


class _Sampler:
    """Peak RSS of every tracked tree, from a thread (the loop keeps timing)."""

    def __init__(self, table: ProcessTable, interval_s: float) -> None:
        self._table = table
        self._interval_s = interval_s
        self._peaks: dict[int, int | None] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def track(self, pid: int) -> None:
        with self._lock:
            self._peaks[pid] = None

    def untrack(self, pid: int) -> int | None:
        with self._lock:
            return self._peaks.pop(pid, None)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            with self._lock:
                pids = list(self._peaks)
            if not pids:
                continue
            usage = self._table.sample(pids)
            with self._lock:
                for pid, seen in usage.items():
                    if pid in self._peaks:
                        self._peaks[pid] = max(self._peaks[pid] or 0, seen.rss_bytes)


def _relative_to_fastest(results: list[CommandResult]) -> list[CommandResult]:
    """Each result with its speed relative to the fastest; unchanged when the
    fastest took no measurable time (no ratio to zero means anything)."""
    relative = stats.relative_speeds([(r.wall.mean, r.wall.stddev) if r.wall else (math.inf, None) for r in results])
    if relative is None:
        return results
    return [dataclasses.replace(r, relative=rel) for r, rel in zip(results, relative)]


class _Bench:
    def __init__(self, commands: Sequence[Command], options: Options, on_progress: Callable[[Progress], None] | None, table: ProcessTable | None) -> None:
        self.commands = commands
        self.options = options
        self.on_progress = on_progress
        self.sampler = _Sampler(table or default_table(), options.sample_interval_s)
        self.failure: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._span = (0.0, 0.0)
        """perf_counter of the first timed start and of the last end."""

    async def main(self) -> BenchmarkResult:
        """Under SIGINT/SIGTERM capture: a signal cancels the benchmark, whose
        runs are then killed and reaped, and raises Interrupted."""
        task = asyncio.current_task()
        assert task is not None
        capture = SignalCapture(lambda signum: task.cancel(), lambda signum: task.cancel())
        try:
            with capture:
                return await self._main()
        except asyncio.CancelledError:
            if capture.received:
                raise Interrupted(capture.received[0]) from None
            raise

    async def _main(self) -> BenchmarkResult:
        started_at = time.time()
        self.sampler.start()
        try:
            overhead = await self._shell_overhead()
            results = []
            for index, command in enumerate(self.commands):
                results.append(await self._command(index, command, overhead))
                if self.failure:
                    break
        finally:
            self.sampler.stop()
        if len(results) > 1 and not self.failure:
            results = _relative_to_fastest(results)
        return BenchmarkResult(tuple(results), self.options, overhead, started_at, self.failure)

    # ------------------------------------------------------------ one run

    async def _spawn_and_wait(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], *, sample: bool) -> _Raw:
        """One run of `argv` as the engine runs a child (its own session, what
        it leaves in its group killed after it), stdio on /dev/null."""
        child = Child(tuple(argv), cwd=cwd, env=env)
        started_at = time.time()
        began = time.perf_counter()
        pid = await child.start()
        if sample:
            self.sampler.track(pid)
        try:
            exit = await child.wait()
        except BaseException:
            child.reap()
            self.sampler.untrack(pid)
            raise
        peak = self.sampler.untrack(pid) if sample else None
        user_s, system_s = (exit.usage.ru_utime, exit.usage.ru_stime) if exit.usage else (0.0, 0.0)
        return _Raw(began, began + exit.elapsed_s, started_at, exit.ended_at, exit.returncode, user_s, system_s, peak)

    async def _shell_overhead(self) -> tuple[float, float, float] | None:
        shelled = [c for c in self.commands if c.via_shell]
        if not shelled:
            return None
        first = shelled[0]
        argv = (*first.argv[:-1], "")
        raws = []
        for _ in range(SHELL_PROBE_RUNS):
            raw = await self._spawn_and_wait(argv, first.cwd, first.env, sample=False)
            if raw.returncode != 0:
                raise BenchmarkError(f"the shell {argv[0]} fails to run an empty command (exit {raw.returncode})")
            raws.append(raw)
        return (stats.mean([r.ended - r.began for r in raws]), stats.mean([r.user_s for r in raws]), stats.mean([r.system_s for r in raws]))

    # --------------------------------------------------------- one command

    async def _command(self, index: int, command: Command, overhead: tuple[float, float, float] | None) -> CommandResult:
        opts = self.options
        if opts.warmup:
            await self._dispatch(index, command, "warmup", lambda launched, first: launched < opts.warmup, [], overhead)
        runs: list[RunFigures] = []
        if not self.failure:
            if opts.runs is not None:
                fixed = opts.runs
                more: Callable[[int, float | None], bool] = lambda launched, first: launched < fixed
            else:
                more = lambda launched, first: launched < opts.min_runs or first is None or time.perf_counter() - first < opts.max_time_s
            await self._dispatch(index, command, "runs", more, runs, overhead)
        runs.sort(key=lambda r: r.index)
        return command_result(command, runs, self._span)

    async def _dispatch(
        self,
        index: int,
        command: Command,
        phase: str,
        more: Callable[[int, float | None], bool],
        runs: list[RunFigures],
        overhead: tuple[float, float, float] | None,
    ) -> None:
        opts = self.options
        slots = asyncio.Semaphore(max(opts.parallel, 1))
        tasks: set[asyncio.Task[None]] = set()
        done: list[float] = []
        first: list[float] = []
        ends: list[float] = []
        launched = 0
        timed = phase == "runs"
        correction = overhead if command.via_shell and overhead else (0.0, 0.0, 0.0)

        def estimate() -> int:
            if opts.runs is not None or phase == "warmup":
                return opts.runs if phase == "runs" and opts.runs is not None else opts.warmup
            if not done:
                return opts.min_runs
            per_run = max(stats.mean(done), 1e-6) / max(opts.parallel, 1)
            return max(opts.min_runs, launched, math.ceil(opts.max_time_s / per_run))

        async def one(number: int) -> None:
            try:
                if opts.prepare:
                    prep = await self._spawn_and_wait(opts.prepare, command.cwd, command.env, sample=False)
                    code = prep.returncode
                    if code != 0:
                        self._fail(f"the --prepare command {_code_text(code)} (before run {number} of {command.name!r})")
                        return
                raw = await self._spawn_and_wait(command.argv, command.cwd, command.env, sample=timed)
            finally:
                slots.release()
            code = raw.returncode
            wall = max(raw.ended - raw.began - correction[0], 0.0)
            done.append(wall)
            ends.append(raw.ended)
            if timed:
                runs.append(
                    RunFigures(
                        index=number,
                        started_at=raw.started_at,
                        ended_at=raw.ended_at,
                        time_wall_s=wall,
                        time_user_s=max(raw.user_s - correction[1], 0.0),
                        time_system_s=max(raw.system_s - correction[2], 0.0),
                        memory_peak_bytes=raw.peak,
                        exit_code=code if code >= 0 else None,
                        signal=-code if code < 0 else None,
                    )
                )
            if code != 0 and not opts.ignore_failure:
                hint = " (command not found?)" if code == 127 else ""
                which = "warmup run" if phase == "warmup" else "run"
                self._fail(f"{command.name!r} {_code_text(code)}{hint} in {which} {number}; use --ignore-failure to time it anyway")
            if self.on_progress is not None:
                self.on_progress(Progress(index, command.name, phase, len(done), estimate(), stats.mean(done)))

        errors: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]
                self._stop_runs()

        self._tasks = tasks
        if self.on_progress is not None:
            self.on_progress(Progress(index, command.name, phase, 0, estimate(), None))
        loop = asyncio.get_running_loop()
        try:
            while not self.failure and not errors and more(launched, first[0] if first else None):
                await slots.acquire()
                if self.failure or errors or not more(launched, first[0] if first else None):
                    slots.release()
                    break
                launched += 1
                if not first:
                    first.append(time.perf_counter())
                task = loop.create_task(one(launched))
                tasks.add(task)
                task.add_done_callback(finished)
        except BaseException:
            self._stop_runs()
            raise
        finally:
            # Runs cancelled (after a failure, an error or Ctrl-C) are killed and reaped.
            while tasks:
                await asyncio.wait(set(tasks))
        if errors:
            raise errors[0]
        self._span = (first[0] if first else 0.0, max(ends) if ends else 0.0)

    def _stop_runs(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def _fail(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
            self._stop_runs()


def _code_text(code: int) -> str:
    return f"exited with code {code}" if code >= 0 else f"was killed by {signal_name(-code)}"


def run_benchmark(
    commands: Sequence[Command],
    options: Options,
    on_progress: Callable[[Progress], None] | None = None,
    table: ProcessTable | None = None,
) -> BenchmarkResult:
    """Time every command, one after the other. Raises SpawnError when a
    command cannot start at all; a failing run is reported in `failure`."""
    return asyncio.run(_Bench(commands, options, on_progress, table).main())
