"""Big inputs: `each` over a million items (`check` time; `run` peak RSS and
throughput over a fixed window) and a manifest of ten thousand processes
(`check` time). SPEC: `check` ≤ 1 s and `run` ≤ 100 MiB for the million;
the ten thousand load in under a second. Times are also given as a ratio to
`python -c pass` measured in the same rounds."""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

from harness import Figure, Measurement, fmt, procctl, rounds_of, run_with_peak, timed

ITEMS = 1_000_000
PROCESSES = 10_000
RUN_WINDOW_S = 20
"""How long the million-item run goes before its --timeout stops it: long
enough for its memory to settle, short of the hours a million spawns take."""
MIB = 1 << 20


def _write(root: Path, text: str) -> Path:
    path = root / "procfile.toml"
    path.write_text(textwrap.dedent(text))
    return path


def bigpool(rounds: int, quick: bool) -> Measurement:
    items = 100_000 if quick else ITEMS
    window = 5 if quick else RUN_WINDOW_S
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        (root / "check").mkdir()
        (root / "run").mkdir()
        (root / "many").mkdir()
        _write(root / "check", f'[process.t]\ncmd = "echo {{item}}"\neach = {{ range = [1, {items}] }}\n')
        _write(root / "run", f'[settings]\nmax_parallel = 8\nfail_fast = false\n[process.t]\ncmd = ["/bin/true"]\neach = {{ range = [1, {items}] }}\n')
        many = PROCESSES // 10 if quick else PROCESSES
        (root / "many" / "procfile.toml").write_text(
            "".join(f'[process.p{i}]\ncmd = "sleep 1"\n' + (f'depends_on = ["p{i - 1}"]\n' if i % 10 else "") for i in range(many))
        )
        runners = {
            f"procctl check ({items:,} items)": lambda: timed([*procctl(), "check"], cwd=root / "check"),
            f"procctl check ({many:,} processes)": lambda: timed([*procctl(), "check"], cwd=root / "many"),
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"], cwd=root),
        }
        times = rounds_of(rounds, runners)
        peaks, rates = [], []
        for _ in range(rounds):
            # 124: the run was stopped by its --timeout, as meant.
            took, peak, out = run_with_peak([*procctl(), "run", "--plain", "--timeout", f"{window}s"], cwd=root / "run", keep_stdout=True, ok=(0, 124))
            started = out.count(b" started with pid ")
            peaks.append(peak / MIB)
            rates.append(started / took)
    figures = [Figure(name, "s", values, ours=name.startswith("procctl")) for name, values in times.items()]
    figures.append(Figure(f"procctl run ({items:,} items, {window} s)", "peak RSS MiB", peaks, ours=True))
    figures.append(Figure(f"procctl run ({items:,} items, {window} s)", "jobs/s", rates, ours=True))
    check_s = figures[0].median
    many_s = figures[1].median
    python_s = figures[2].median
    peak = max(peaks)
    met = check_s <= 1.0 and many_s <= 1.0 and peak <= 100
    notes = [
        f"check of {items:,} items: {fmt(check_s)} s = {fmt(check_s / python_s)} × `python -c pass`; "
        f"check of {many:,} processes: {fmt(many_s)} s = {fmt(many_s / python_s)} × `python -c pass`",
        f"the run stops itself after {window} s (--timeout): its peak RSS is the whole run's high-water mark "
        f"(VmHWM), with every started job folded into the ledger as it ends",
    ]
    return Measurement(
        "bigpool",
        f"`each` of {items:,} items (check; run for {window} s at -j 8) and a manifest of {many:,} processes (check)",
        "check ≤ 1 s (both), run ≤ 100 MiB RSS",
        figures,
        f"{fmt(check_s)} s / {fmt(many_s)} s / {fmt(peak)} MiB",
        f"{fmt(python_s)} s (python -c pass)",
        check_s / python_s if python_s else None,
        f"check of {items:,} items ÷ python -c pass",
        met,
        notes,
    )

