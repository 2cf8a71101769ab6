"""A BenchmarkResult as JSON, Markdown or CSV text. Pure: result in, text out.

JSON and CSV are hyperfine's layouts, so that what reads hyperfine's exports
(its plotting and statistics scripts, `jq .results[0].mean`, a spreadsheet)
reads ours; procctl's own figures stand beside hyperfine's fields:

- JSON: `{"results": [...]}`, one object per command with hyperfine's keys —
  `command`, `mean`, `stddev`, `median`, `user`, `system`, `min`, `max` in
  seconds, `times` (each run's wall time), `memory_usage_byte` (each run's
  peak RSS) and `exit_codes` (each run's, 128 + N for signal N) — then
  procctl's: `p95`, `runs`, `outliers`, `peak_rss_bytes`, `elapsed_s`,
  `runs_per_s`, `relative`, `relative_stddev`, `name`, `process`, `argv`
  and `run_figures` (every run's start, end and figures). Beside `results`:
  the options and the shell's start-up cost that was subtracted.
- CSV: one row per command, hyperfine's columns
  `command,mean,stddev,median,user,system,min,max` first, procctl's after.
- Markdown: one row per command, as hyperfine's table, with median, p95, CPU,
  peak RSS and throughput added.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from procctl import __version__
from procctl.bench.result import BenchmarkResult, CommandResult, RunFigures
from procctl.jsonout import dumps

HYPERFINE_CSV_FIELDS = ("command", "mean", "stddev", "median", "user", "system", "min", "max")
"""hyperfine's CSV header, in its order."""
CSV_FIELDS = (*HYPERFINE_CSV_FIELDS, "p95", "runs", "runs_per_s", "peak_rss_bytes", "relative", "relative_stddev", "outliers")


def run_dict(run: RunFigures) -> dict[str, Any]:
    return {
        "index": run.index,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "time_wall_s": run.time_wall_s,
        "time_user_s": run.time_user_s,
        "time_system_s": run.time_system_s,
        "memory_peak_bytes": run.memory_peak_bytes,
        "exit_code": run.exit_code,
        "signal": run.signal,
    }


def _exit_code(run: RunFigures) -> int:
    """As hyperfine reports it: the exit code, or 128 + N for signal N."""
    return run.exit_code if run.exit_code is not None else 128 + (run.signal or 0)


def command_dict(result: CommandResult) -> dict[str, Any]:
    wall = result.wall
    command = result.command
    relative = result.relative
    return {
        # hyperfine's fields, in its order.
        "command": command.text,
        "mean": wall.mean if wall else None,
        "stddev": wall.stddev if wall else None,
        "median": wall.median if wall else None,
        "user": result.user_mean_s,
        "system": result.system_mean_s,
        "min": wall.min if wall else None,
        "max": wall.max if wall else None,
        "times": [run.time_wall_s for run in result.runs],
        "memory_usage_byte": [run.memory_peak_bytes for run in result.runs],
        "exit_codes": [_exit_code(run) for run in result.runs],
        # procctl's.
        "p95": wall.p95 if wall else None,
        "runs": len(result.runs),
        "outliers": [result.runs[i].index for i in wall.outliers] if wall else [],
        "peak_rss_bytes": result.memory_peak_bytes,
        "elapsed_s": result.elapsed_s,
        "runs_per_s": result.runs_per_s,
        "relative": relative.ratio if relative else None,
        "relative_stddev": relative.stddev if relative else None,
        "name": command.name,
        "process": command.process,
        "argv": list(command.argv),
        "run_figures": [run_dict(run) for run in result.runs],
    }


def to_dict(result: BenchmarkResult) -> dict[str, Any]:
    options = result.options
    spawn = result.shell_spawn_s
    return {
        "results": [command_dict(r) for r in result.results],
        "procctl_version": __version__,
        "started_at": result.started_at,
        "parallel": options.parallel,
        "warmup": options.warmup,
        "shell": options.shell or "none",
        "shell_spawn_s": None if spawn is None else {"wall": spawn[0], "user": spawn[1], "system": spawn[2]},
        "failure": result.failure,
    }


def to_json(result: BenchmarkResult) -> str:
    return dumps(to_dict(result))


def _unit(seconds: float) -> tuple[str, float, int]:
    """The unit of a table (by its fastest mean), its scale and decimals."""
    if seconds >= 1:
        return "s", 1.0, 3
    if seconds >= 1e-3:
        return "ms", 1e3, 1
    return "µs", 1e6, 1


def _size(n_bytes: int | None) -> str:
    return "-" if n_bytes is None else f"{n_bytes / 1024 / 1024:.1f}"


def _md_name(name: str) -> str:
    escaped = name.replace("|", "\\|")
    return escaped if "`" in name else f"`{escaped}`"


def to_markdown(result: BenchmarkResult) -> str:
    done = [r for r in result.results if r.wall]
    unit, scale, digits = _unit(min((r.wall.mean for r in done if r.wall), default=1.0))
    header = (
        f"| Command | Mean [{unit}] | Min [{unit}] | Median [{unit}] | p95 [{unit}] | Max [{unit}] "
        f"| User [{unit}] | System [{unit}] | Peak RSS [MiB] | Runs/s | Relative |"
    )
    lines = [header, "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in done:
        wall = r.wall
        assert wall is not None
        sd = f" ± {wall.stddev * scale:.{digits}f}" if wall.stddev is not None else ""
        rel = r.relative
        if rel is None:
            # Alone, a command is its own reference; among others, no ratio was computable.
            relative = "1.00" if len(done) == 1 else "-"
        else:
            relative = "1.00" if rel.fastest else f"{rel.ratio:.2f}" + (f" ± {rel.stddev:.2f}" if rel.stddev is not None else "")
        cells = [
            _md_name(r.command.name),
            f"{wall.mean * scale:.{digits}f}{sd}",
            f"{wall.min * scale:.{digits}f}",
            f"{wall.median * scale:.{digits}f}",
            f"{wall.p95 * scale:.{digits}f}",
            f"{wall.max * scale:.{digits}f}",
            "-" if r.user_mean_s is None else f"{r.user_mean_s * scale:.{digits}f}",
            "-" if r.system_mean_s is None else f"{r.system_mean_s * scale:.{digits}f}",
            _size(r.memory_peak_bytes),
            "-" if r.runs_per_s is None else f"{r.runs_per_s:.2f}",
            relative,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""  # hyperfine leaves a figure it does not have empty
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return value


def to_csv(result: BenchmarkResult) -> str:
    """One row per command: hyperfine's columns, then procctl's (`outliers`
    holds the outlying runs' numbers, separated by spaces)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in result.results:
        figures = command_dict(r)
        writer.writerow([_csv_cell(figures[field]) for field in CSV_FIELDS])
    return out.getvalue()
