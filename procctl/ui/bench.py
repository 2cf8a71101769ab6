"""`procctl benchmark` on screen: a progress bar while it runs, then a table
of each command's figures, the outlier warnings and the comparison. Pure
renderers over the result, plus the progress view fed by the runner's
callback; never spawns."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from procctl.units import format_size

if TYPE_CHECKING:
    from procctl.bench.result import BenchmarkResult, CommandResult
    from procctl.bench.result import Progress as RunProgress
    from procctl.bench.spawn import SpawnResult


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit a duration reads best in, and its scale."""
    if seconds >= 1:
        return "s", 1.0
    if seconds >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def format_time(seconds: float | None, unit: tuple[str, float] | None = None) -> str:
    """0.1023 → '102.3 ms'; in `unit` when given (so that mean and σ match)."""
    if seconds is None:
        return "-"
    name, scale = unit or time_unit(seconds)
    digits = 3 if name == "s" else 1
    return f"{seconds * scale:.{digits}f} {name}"


class ProgressView:
    """A rich progress bar on stderr (a terminal only), one task per command
    and phase. Call it with each `Progress` the runner reports."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, markup=False, emoji=False)
        self.enabled = self.console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),  # a command's text
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[estimate]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[tuple[int, str], TaskID] = {}

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.enabled:
            self._progress.stop()

    def __call__(self, progress: RunProgress) -> None:
        if not self.enabled:
            return
        key = (progress.command_index, progress.phase)
        estimate = f"current estimate: {format_time(progress.mean_s)}" if progress.mean_s is not None else ""
        task = self._tasks.get(key)
        if task is None:
            for other in self._tasks.values():
                self._progress.update(other, visible=False)
            label = f"#{progress.command_index + 1} {'warmup' if progress.phase == 'warmup' else 'runs'}"
            task = self._tasks[key] = self._progress.add_task(label, total=progress.total, estimate=estimate)
        self._progress.update(task, completed=progress.done, total=max(progress.total, progress.done), estimate=estimate)


def _mean_sd(result: CommandResult) -> str:
    wall = result.wall
    if wall is None:
        return "-"
    unit = time_unit(wall.mean)
    if wall.stddev is None:
        return format_time(wall.mean, unit)
    return f"{format_time(wall.mean, unit)} ± {format_time(wall.stddev, unit)}"


def relative_text(result: CommandResult) -> str:
    rel = result.relative
    if rel is None:
        return "-"
    if rel.fastest:
        return "1.00"
    return f"{rel.ratio:.2f}" + (f" ± {rel.stddev:.2f}" if rel.stddev is not None else "")


def _exit_text(result: CommandResult) -> str:
    return ", ".join(f"{code} ×{count}" for code, count in result.exit_code_counts.items()) or "-"


def results_table(result: BenchmarkResult) -> Table:
    """One column per command, one row per figure."""
    table = Table(title="procctl benchmark", title_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    done = [r for r in result.results if r.wall is not None]
    for number, r in enumerate(done, start=1):
        table.add_column(f"#{number} {r.command.name}", justify="right", overflow="fold")
    parallel = result.options.parallel
    rows: list[tuple[str, Sequence[str]]] = [
        ("runs" + (f" (-j {parallel})" if parallel > 1 else ""), [str(len(r.runs)) for r in done]),
        ("mean ± σ", [_mean_sd(r) for r in done]),
    ]
    for label, attr in (("min", "min"), ("median", "median"), ("p95", "p95"), ("max", "max")):
        rows.append((label, [format_time(getattr(r.wall, attr), time_unit(r.wall.mean)) if r.wall else "-" for r in done]))
    rows += [
        ("user (mean)", [format_time(r.user_mean_s, time_unit(r.wall.mean)) if r.wall else "-" for r in done]),
        ("system (mean)", [format_time(r.system_mean_s, time_unit(r.wall.mean)) if r.wall else "-" for r in done]),
        ("peak RSS (tree)", [format_size(r.memory_peak_bytes) for r in done]),
        ("runs/s", [f"{r.runs_per_s:.2f}" if r.runs_per_s else "-" for r in done]),
        ("exit codes", [_exit_text(r) for r in done]),
    ]
    if len(done) > 1:
        rows.append(("relative", [relative_text(r) for r in done]))
    for label, cells in rows:
        table.add_row(label, *cells)
    return table


def warning_lines(result: BenchmarkResult) -> list[str]:
    """Outliers, failed runs kept with --ignore-failure, and runs too short to sample."""
    lines = []
    for number, r in enumerate(result.results, start=1):
        if r.wall is None:
            continue
        name = f"#{number} {r.command.name!r}"
        if r.wall.outliers:
            which = ", ".join(str(r.runs[i].index) for i in r.wall.outliers)
            lines.append(
                f"warning: {name}: {len(r.wall.outliers)} of {len(r.runs)} runs are statistical outliers "
                f"(modified Z-score > 3.5: run {which}); a busy machine, caches or the first runs may be to blame "
                "(try --warmup or --prepare)"
            )
        failed = sum(1 for run in r.runs if run.failed)
        if failed:
            lines.append(f"warning: {name}: {failed} of {len(r.runs)} runs failed (kept by --ignore-failure)")
    done = [r for r in result.results if r.wall is not None]
    if len(done) > 1 and not result.failure and all(r.relative is None for r in done):
        zero = ", ".join(f"{r.command.name!r}" for r in done if r.wall is not None and r.wall.mean <= 0)
        lines.append(
            f"warning: no relative speeds: {zero} took no measurable time once the shell's start-up was subtracted "
            "(too fast to compare this way: try --shell none, or more work per run)"
        )
    return lines


def comparison_lines(result: BenchmarkResult) -> list[str]:
    """'A' ran 2.00 ± 0.01 times faster than 'B', as hyperfine says it."""
    done = [r for r in result.results if r.wall is not None and r.relative is not None]
    if len(done) < 2:
        return []
    fastest = next(r for r in done if r.relative and r.relative.fastest)
    lines = [f"{fastest.command.name!r} ran"]
    for r in done:
        if r is not fastest:
            lines.append(f"  {relative_text(r)} times faster than {r.command.name!r}")
    return lines


def spawn_table(result: SpawnResult) -> Table:
    rounds = len(result.procctl_s)
    table = Table(title=f"spawn: {result.jobs} × /bin/true at -j {result.parallel}, median of {rounds} round{'s' if rounds != 1 else ''}", title_justify="left")
    for column in ("tool", "median time", "min", "max", "jobs/s"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    rows = [(f"procctl run -j {result.parallel}", result.procctl_s, result.procctl_jobs_per_s)]
    if result.xargs_s:
        rows.append((f"xargs -P {result.parallel}", result.xargs_s, result.xargs_jobs_per_s or 0.0))
    for tool, times, rate in rows:
        ordered = sorted(times)
        middle = ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
        table.add_row(tool, format_time(middle), format_time(ordered[0]), format_time(ordered[-1]), f"{rate:,.0f}")
    return table
