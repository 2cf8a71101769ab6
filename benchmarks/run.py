"""procctl against the tools its users would pick instead, in one run.

    python3 benchmarks/run.py [--rounds 3] [--quick] [--only spawn,output] [--write-docs]

Each measurement runs procctl and its reference back to back, `--rounds`
times, and reports medians with min and max; the figure that counts is the
ratio of the two medians, measured on the same machine in the same minute.
`--write-docs` rewrites docs/benchmarks.md with the results (with `--only`,
the rows not measured are kept from the document as it was, and it says so).

Measurements (SPEC "Performance targets"): spawn (2000 jobs, and 20,000
as spawn20k), output, bringup, idle,
control, startup (the quick commands and the first spawn against
`python -c pass`), scale (and scale10k: 10,000 running), shutdown, benchmark (procctl benchmark vs hyperfine), pool
(longest-first vs FIFO), memory (memory-aware `-j auto`), bigpool (an
`each` of a million items, a manifest of ten thousand processes) and dask
(`each` jobs on a local Dask cluster against a bare Dask client; needs
procctl[dask]). Missing peers
(honcho, supervisor, GNU parallel, hyperfine) are installed first when
possible; a row whose peer cannot be had is skipped with a message. A
measurement that fails prints one error line and the others go on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# The sibling modules (harness, fleet, …), also when this file is loaded from elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy
import bigpool
import dask_jobs
import fleet
import many
import psutil
import scheduling
import startup
import throughput
from harness import (
    ROOT,
    BenchError,
    Measurement,
    become_subreaper,
    fmt,
    procctl,
    progress,
    reap_orphans,
    tool,
)

MEASUREMENTS: dict[str, Callable[[int, bool], Measurement]] = {
    "spawn": throughput.spawn,
    "spawn20k": throughput.spawn_many,
    "output": throughput.output,
    "bringup": fleet.bringup,
    "idle": fleet.idle,
    "control": fleet.control,
    "startup": startup.startup,
    "scale": fleet.scale,
    "scale10k": many.scale_many,
    "shutdown": fleet.shutdown,
    "benchmark": accuracy.benchmark,
    "pool": scheduling.smart_pool,
    "memory": scheduling.memory_pool,
    "bigpool": bigpool.bigpool,
    "dask": dask_jobs.dask_overhead,
}

PEERS = {
    # the command that must exist: (how to install it, package)
    "honcho": ("pip", "honcho"),
    "supervisord": ("pip", "supervisor"),
    "supervisorctl": ("pip", "supervisor"),
    "parallel": ("apt", "parallel"),
    "hyperfine": ("apt", "hyperfine"),
}
INSTALL_TIMEOUT_S = 300
LOAD_AT_START = "?"
"""Other work on the machine skews every figure: the report says how busy it was."""


# --------------------------------------------------------------------- peers


def _quietly(argv: list[str], env: dict[str, str] | None = None) -> bool:
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, timeout=INSTALL_TIMEOUT_S).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_peers() -> None:
    """Install the peers that are missing; never fail (their rows are skipped)."""
    missing = [name for name in PEERS if not tool(name)]
    pip = sorted({PEERS[n][1] for n in missing if PEERS[n][0] == "pip"})
    apt = sorted({PEERS[n][1] for n in missing if PEERS[n][0] == "apt"})
    if pip:
        progress(f"installing {', '.join(pip)} with pip …")
        _quietly([sys.executable, "-m", "pip", "install", "-q", *pip])
    if apt:
        if os.geteuid() == 0 and tool("apt-get"):
            progress(f"installing {', '.join(apt)} with apt-get …")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            if not _quietly(["apt-get", "install", "-y", "-q", *apt], env):
                _quietly(["apt-get", "update", "-q"], env) and _quietly(["apt-get", "install", "-y", "-q", *apt], env)
        else:
            progress(f"cannot install {', '.join(apt)} (needs root and apt-get)")
    for name in PEERS:
        if not tool(name):
            progress(f"{name} is not available: the rows that need it are skipped")


# --------------------------------------------------------------------- report


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "?"


def _revision() -> str:
    """The commit measured, and whether procctl's source differed from it."""
    commit = _first_line(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "procctl", "pyproject.toml"], capture_output=True, check=False).stdout
    return f"{commit}" + (" (with uncommitted changes to procctl/ or pyproject.toml)" if dirty.strip() else "")


def machine() -> list[tuple[str, str]]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    rows = [
        ("procctl source", _revision()),
        ("CPU", model),
        ("cores", f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False) or '?'} physical"),
        ("RAM", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("kernel", f"Linux {platform.release()} ({system})"),
        # Where it is installed would be a path of this machine: say what kind of interpreter it is.
        ("Python", f"{platform.python_version()} ({'a virtual environment' if sys.prefix != sys.base_prefix else 'an interpreter with its own site-packages'})"),
        ("load average", f"{LOAD_AT_START} at the start, {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end (1, 5, 15 min)"),
    ]
    versions = {
        "procctl": [*procctl(), "--version"],
        "xargs": [tool("xargs") or "xargs", "--version"],
        "GNU parallel": [tool("parallel") or "parallel", "--version"],
        "hyperfine": [tool("hyperfine") or "hyperfine", "--version"],
        "honcho": [tool("honcho") or "honcho", "--version"],
        "supervisord": [tool("supervisord") or "supervisord", "--version"],
    }
    rows.append(("tools", "; ".join(f"{name} {_first_line(argv)}" for name, argv in versions.items())))
    return rows


def md(text: str) -> str:
    """A table cell: a `|` in it would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _met(value: bool | None) -> str:
    return "-" if value is None else ("**met**" if value else "**not met**")


def render(results: list[Measurement], failures: list[tuple[str, str]], command: str, took_s: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} in {took_s / 60:.1f} minutes, with",
        "",
        f"    {command}",
        "",
        "run from the repository's root. Every measurement runs procctl and its reference back to back, round after round; "
        "figures are medians of the rounds (or of every call, for latencies), with min and max. Ratios are procctl ÷ reference "
        "of the medians, both measured in the same run: quote them, not the absolute figures, which depend on the machine. "
        "The targets are those of SPEC.md, \"Performance targets\".",
        "",
        "Where a target was missed, what the profiles showed, what was fixed (before and after) and why the rest still "
        "misses: [profiling.md](profiling.md).",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {md(key)} | {md(value)} |" for key, value in machine()]
    lines += ["", "## Summary", "", "| what | procctl | reference | ratio procctl ÷ reference | target | met? |", "| --- | --- | --- | --- | --- | --- |"]
    for result in results:
        ratio = f"{result.ratio:.2f}" if result.ratio is not None else "-"
        lines.append(f"| {md(result.name)} | {md(result.ours)} | {md(result.reference)} | {ratio} | {md(result.target)} | {_met(result.met)} |")
    for name, error in failures:
        lines.append(f"| {md(name)} | failed: {md(error)} | - | - | - | - |")
    for result in results:
        ratio = f"{result.ratio:.2f} ({result.ratio_of})" if result.ratio is not None else "-"
        lines += ["", f"## {result.name}: {result.what}", "", f"Target: {result.target}. Ratio: {ratio}. {_met(result.met)}.", ""]
        lines += ["| tool | figure | median | min | max | procctl ÷ this |", "| --- | --- | --- | --- | --- | --- |"]
        for figure in result.figures:
            ours = next((f for f in result.figures if f.ours and f.quantity == figure.quantity), None)
            versus = f"{ours.median / figure.median:.2f}" if ours is not None and not figure.ours and figure.median else "-"
            lines.append(
                f"| {md(figure.tool)} | {md(figure.quantity)} | {fmt(figure.median)} | {fmt(min(figure.values))} | {fmt(max(figure.values))} | {versus} |"
            )
        lines += [""] + [f"- {note}" for note in result.notes]
    if failures:
        lines += ["", "## Failed measurements", ""] + [f"- {name}: {md(error)}" for name, error in failures]
    return "\n".join(lines)


KEPT = "- Not measured in this run, kept from an earlier one ("


def _old_parts(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """Of an earlier docs/benchmarks.md: where each summary row was measured
    (its run's date and load average), its summary rows and its sections,
    by measurement name."""
    lines = text.splitlines()
    measured = next((line for line in lines if line.startswith("Measured ")), "").removeprefix("Measured ").removesuffix(", with")
    load = next((line.split("|")[2].strip() for line in lines if line.startswith("| load average |")), "")
    whence: dict[str, str] = {}
    for line in lines:
        if line.startswith(KEPT):
            # "- Not measured in this run, kept from an earlier one (WHEN): a, b."
            when, _, names = line.removeprefix(KEPT).rpartition("): ")
            for name in names.removesuffix(".").split(", "):
                whence[name] = when
    rows: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_summary = False
    for line in lines:
        if line.startswith("## "):
            in_summary = line == "## Summary"
            name = line[3:].partition(":")[0]
            current = sections.setdefault(name, []) if ":" in line and line != "## Failed measurements" else None
        elif in_summary and line.startswith("| ") and not line.startswith(("| what ", "| --- ")):
            name = line.split("|")[1].strip()
            rows[name] = line
            whence.setdefault(name, f"{measured}; load average {load}")
        if current is not None:
            current.append(line)
    return whence, rows, sections


def merge(new: str, old: str) -> str:
    """`new` (a run of some measurements) with the summary rows and the
    sections of the measurements it did not run kept from `old`, each
    saying which run it comes from."""
    whence, rows, sections = _old_parts(old)
    _, new_rows, _ = _old_parts(new)
    kept = [name for name in rows if name not in new_rows]
    if not kept:
        return new
    lines = new.splitlines()
    by_run: dict[str, list[str]] = {}
    for name in kept:
        by_run.setdefault(whence[name], []).append(name)
    notes = [f"{KEPT}{when}): {', '.join(names)}." for when, names in by_run.items()]
    at = lines.index("## Machine")
    lines[at:at] = [*notes, ""]
    summary_end = lines.index("## Summary") + 4
    while summary_end < len(lines) and lines[summary_end].startswith("| "):
        summary_end += 1
    lines[summary_end:summary_end] = [rows[name] for name in kept]
    tail = [line for name in kept for line in ["", *sections.get(name, [])]]
    failed = lines.index("## Failed measurements") - 1 if "## Failed measurements" in lines else len(lines)
    lines[failed:failed] = tail
    return "\n".join(lines)


# --------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (200 jobs, 128 MiB, shorter windows)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help=f"comma-separated, of: {', '.join(MEASUREMENTS)}")
    parser.add_argument("--write-docs", action="store_true", help="write the results to docs/benchmarks.md")
    args = parser.parse_args()
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in MEASUREMENTS]
    if unknown or args.rounds < 1:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}" if unknown else "--rounds must be at least 1")
    global LOAD_AT_START
    LOAD_AT_START = " ".join(f"{x:.2f}" for x in os.getloadavg())
    become_subreaper()
    ensure_peers()
    began = time.perf_counter()
    results: list[Measurement] = []
    failures: list[tuple[str, str]] = []
    for name in wanted:
        progress(f"{name} …")
        try:
            result = MEASUREMENTS[name](args.rounds, args.quick)
            results.append(result)
            progress(f"{name}: {result.ours} vs {result.reference}: {'met' if result.met else 'NOT met'}")
        except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            failures.append((name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
            progress(f"error: {name}: {exc}")
        except Exception as exc:  # a bug of this suite: show where, and go on with the rest
            failures.append((name, f"{type(exc).__name__}: {exc}"))
            progress(f"error: {name}: {traceback.format_exc()}")
        finally:
            left = reap_orphans()
            if left:
                progress(f"warning: {name} left {len(left)} process(es) behind, now killed: {', '.join(left[:3])}")
    command = "python3 benchmarks/run.py " + shlex.join(sys.argv[1:])
    text = render(results, failures, command.strip(), time.perf_counter() - began)
    print(text)
    if args.write_docs:
        doc = ROOT / "docs" / "benchmarks.md"
        if set(wanted) != set(MEASUREMENTS) and doc.exists():
            # A run of some measurements keeps the others' rows from the last full run.
            text = merge(text, doc.read_text())
        doc.write_text(text + "\n")
        progress(f"wrote {ROOT / 'docs' / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
