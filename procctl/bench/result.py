"""What a benchmark produces: the commands, every run's figures, their
statistics. Data only; units are in the field names."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping
from pathlib import Path

from procctl.bench import stats
from procctl.errors import ProcctlError


class BenchmarkError(ProcctlError):
    """A benchmark could not complete: a command failed, or could not start."""

    exit_code = 1


class Interrupted(BenchmarkError):
    """SIGINT or SIGTERM stopped the benchmark; its runs were killed."""

    def __init__(self, signum: int) -> None:
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal_name(signum)}: the runs in flight were killed")


@dataclasses.dataclass(frozen=True)
class Command:
    """One thing to time."""

    name: str
    """How tables show it: the command line, or the manifest process name."""
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    """The whole environment of the child."""
    via_shell: bool
    """argv is `SHELL -c TEXT`: the shell's start-up cost is subtracted."""
    text: str
    """The command line as given (history and exports)."""
    process: str | None = None
    """The manifest process it comes from (-p), if any."""
    manifest: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    runs: int | None = None
    """Exactly this many timed runs; None: adaptive (min_runs, max_time_s)."""
    min_runs: int = 10
    max_time_s: float = 3.0
    """Adaptive: keep starting runs until this long has passed (and min_runs ran)."""
    warmup: int = 0
    parallel: int = 1
    prepare: tuple[str, ...] | None = None
    """argv run (untimed) before each run, in the command's cwd and env."""
    shell: str | None = "sh"
    """The shell of `via_shell` commands (for the start-up probe); None: exec."""
    ignore_failure: bool = False
    sample_interval_s: float = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class RunFigures:
    """One timed run."""

    index: int
    """1-based, in the order runs were started."""
    started_at: float
    """Epoch seconds, just before the spawn."""
    ended_at: float
    """Epoch seconds, when the exit was seen."""
    time_wall_s: float
    """Wall time (monotonic clock), less the shell's start-up for shell commands."""
    time_user_s: float | None
    """User CPU of the child and the descendants it waited for (less the shell's)."""
    time_system_s: float | None
    memory_peak_bytes: int | None
    """Highest sampled RSS of the whole tree; None if the run ended before a sample."""
    exit_code: int | None
    """None when a signal ended it."""
    signal: int | None

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


@dataclasses.dataclass(frozen=True)
class CommandResult:
    command: Command
    runs: tuple[RunFigures, ...]
    elapsed_s: float
    """From the first timed start to the last timed end."""
    wall: stats.Summary | None
    """Wall-time statistics in seconds (None if no run completed)."""
    user_mean_s: float | None
    system_mean_s: float | None
    memory_peak_bytes: int | None
    """Highest over all runs."""
    runs_per_s: float | None
    """Timed runs / elapsed_s: throughput, which -j raises."""
    relative: stats.Relative | None = None
    """Speed relative to the fastest command (two commands or more)."""

    @property
    def exit_code_counts(self) -> dict[str, int]:
        """'0' → how many runs exited 0; a signal shows as 'SIGKILL'."""
        counts: dict[str, int] = {}
        for run in self.runs:
            key = str(run.exit_code) if run.exit_code is not None else signal_name(run.signal)
            counts[key] = counts.get(key, 0) + 1
        return counts


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    results: tuple[CommandResult, ...]
    options: Options
    shell_spawn_s: tuple[float, float, float] | None
    """Mean (wall, user, system) seconds of `SHELL -c ''`, subtracted from shell commands."""
    started_at: float
    failure: str | None = None
    """Why the benchmark stopped early (a failing run), or None."""


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """What the progress callback hears after each run."""

    command_index: int
    name: str
    phase: str
    """'warmup' or 'runs'."""
    done: int
    total: int
    """Exact with --runs; an estimate in adaptive mode."""
    mean_s: float | None


def signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum or 0).name
    except ValueError:
        return f"signal {signum}"


def command_result(command: Command, runs: list[RunFigures], span: tuple[float, float]) -> CommandResult:
    if not runs:
        return CommandResult(command, (), 0.0, None, None, None, None, None)
    users = [r.time_user_s for r in runs if r.time_user_s is not None]
    systems = [r.time_system_s for r in runs if r.time_system_s is not None]
    peaks = [r.memory_peak_bytes for r in runs if r.memory_peak_bytes is not None]
    elapsed = max(span[1] - span[0], 0.0)
    return CommandResult(
        command=command,
        runs=tuple(runs),
        elapsed_s=elapsed,
        wall=stats.summarize([r.time_wall_s for r in runs]),
        user_mean_s=stats.mean(users) if users else None,
        system_mean_s=stats.mean(systems) if systems else None,
        memory_peak_bytes=max(peaks) if peaks else None,
        runs_per_s=len(runs) / elapsed if elapsed > 0 else None,
    )


