"""Start-up: how long the quick commands take, and how soon `procctl run`
starts its first child, in units of `python -c pass` measured alongside."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BenchError, Figure, Measurement, fmt, procctl, progress

CALLS = 10
"""Calls of each command a round, interleaved, after one untimed call each."""


def _once(argv: list[str], cwd: Path) -> tuple[float, str]:
    began = time.time()
    clock = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    took = time.perf_counter() - clock
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[-3:])} failed ({done.returncode}): {done.stderr[-500:]}")
    return took, f"{began} {done.stdout}"


def _until_spawn(out: str) -> float:
    """From the tool's exec to its child's: the child prints the epoch time it started."""
    began, _, rest = out.partition(" ")
    for line in rest.splitlines():
        stamp = line.rpartition("|")[2].strip()
        try:
            return float(stamp) - float(began)
        except ValueError:
            continue
    raise BenchError("the child's start time was not in procctl's output")


def startup(rounds: int, quick: bool) -> Measurement:
    calls = 3 if quick else CALLS
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        # `date` prints when it ran: the moment procctl's first child started.
        (root / "procfile.toml").write_text('[process.one]\ncmd = ["date", "+%s.%N"]\n')
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "procctl --version": [*procctl(), "--version"],
            "procctl check": [*procctl(), "check"],
            "procctl run --plain (one process), until its child starts": [*procctl(), "run", "--plain"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for number in range(1, rounds + 1):
            for argv in commands.values():
                _once(argv, root)
            for _ in range(calls):
                for name, argv in commands.items():
                    took, out = _once(argv, root)
                    times[name].append(_until_spawn(out) if name.startswith("procctl run") else took)
            progress(f"  round {number}/{rounds}: " + ", ".join(f"{name.split(',')[0]} {statistics.median(v[-calls:]) * 1000:.1f} ms" for name, v in times.items()))
    ms = {name: [v * 1000 for v in values] for name, values in times.items()}
    python = statistics.median(ms["python -c pass"])
    figures = [Figure(name, "ms", values, ours=name.startswith("procctl")) for name, values in ms.items()]
    units = {name: statistics.median(values) / python for name, values in ms.items()}
    limits = {"procctl --version": 2.0, "procctl check": 2.0, "procctl run --plain (one process), until its child starts": 3.0}
    met = all(units[name] <= limit for name, limit in limits.items())
    notes = [
        f"each command {calls} times a round, interleaved, after one untimed call; `python -c pass` is this Python with its site-packages",
        "in units of `python -c pass`: " + "; ".join(f"{name} {units[name]:.2f} × (target ≤ {limit:g} ×)" for name, limit in limits.items()),
        "until its child starts: from just before `procctl run` is exec'd to the time its one child, `date +%s.%N`, prints",
    ]
    worst = max(limits, key=lambda name: units[name] / limits[name])
    return Measurement(
        "start-up", "the quick commands, and `procctl run` until its first child starts, against `python -c pass`",
        "--version and check ≤ 2 ×, run until the first spawn ≤ 3 × `python -c pass`", figures,
        f"--version {units['procctl --version']:.1f} ×, check {units['procctl check']:.1f} ×, "
        f"run to its first spawn {units['procctl run --plain (one process), until its child starts']:.1f} ×",
        f"{fmt(python)} ms (python -c pass)", units[worst], f"ms of {worst} ÷ ms of python -c pass", met, notes,
    )
