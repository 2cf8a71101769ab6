"""`procctl benchmark` against hyperfine on the same command: do the means agree?"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

from harness import BenchError, Figure, Measurement, procctl, progress, tool

COMMAND = "sleep 0.05"
RUNS = 20
WARMUP = 2


def _json(argv: list[str], cwd: Path, out: Path | None = None) -> dict:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-800:]}")
    return json.loads(out.read_text() if out else done.stdout)


def benchmark(rounds: int, quick: bool) -> Measurement:
    hyperfine = tool("hyperfine")
    if not hyperfine:
        raise BenchError("hyperfine is not installed here: nothing to compare with")
    means: dict[str, list[float]] = {"procctl benchmark": [], "hyperfine": []}
    sigmas: dict[str, list[float]] = {"procctl benchmark": [], "hyperfine": []}
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        for number in range(1, rounds + 1):
            def run_theirs() -> dict:
                argv = [hyperfine, "--runs", str(RUNS), "--warmup", str(WARMUP), "--style", "none", "--export-json", str(root / "h.json"), COMMAND]
                return _json(argv, root, root / "h.json")

            def run_ours() -> dict:
                return _json([*procctl(), "benchmark", "--runs", str(RUNS), "--warmup", str(WARMUP), "--export-json", "-", COMMAND], root)

            # Alternate which goes first, so that drift hits both alike.
            if number % 2:
                theirs, ours = run_theirs(), run_ours()
            else:
                ours, theirs = run_ours(), run_theirs()
            m1, s1 = ours["results"][0]["mean"] * 1000, ours["results"][0]["stddev"] * 1000
            m2, s2 = theirs["results"][0]["mean"] * 1000, theirs["results"][0]["stddev"] * 1000
            means["procctl benchmark"].append(m1)
            means["hyperfine"].append(m2)
            sigmas["procctl benchmark"].append(s1)
            sigmas["hyperfine"].append(s2)
            delta = m1 - m2
            # Two readings of the agreement: the plain sum of the σs, and 2 × the combined σ √(σ1² + σ2²).
            within_sum, within_2 = abs(delta) <= s1 + s2, abs(delta) <= 2 * math.hypot(s1, s2)
            verdicts.append((within_sum, within_2))
            progress(f"  round {number}/{rounds}: procctl {m1:.2f} ± {s1:.2f} ms, hyperfine {m2:.2f} ± {s2:.2f} ms, Δ {delta:+.2f} ms")
    figures = [Figure(name, "mean ms", v, ours=name.startswith("procctl")) for name, v in means.items()]
    figures += [Figure(name, "σ ms", v, ours=name.startswith("procctl")) for name, v in sigmas.items()]
    agree_sum = sum(1 for a, _ in verdicts if a)
    agree_2 = sum(1 for _, b in verdicts if b)
    notes = [
        f"`{COMMAND}`, {RUNS} runs after {WARMUP} warm-up runs, one at a time, alternating the two tools each round; both subtract the shell's start-up",
        "per round: " + "; ".join(
            f"{means['procctl benchmark'][i]:.2f} ± {sigmas['procctl benchmark'][i]:.2f} vs {means['hyperfine'][i]:.2f} ± {sigmas['hyperfine'][i]:.2f} ms "
            f"(|Δ| {abs(means['procctl benchmark'][i] - means['hyperfine'][i]):.2f} ms)"
            for i in range(len(verdicts))
        ),
        f"|Δ| ≤ σ1 + σ2 in {agree_sum} of {len(verdicts)} rounds; |Δ| ≤ 2·√(σ1² + σ2²) in {agree_2} of {len(verdicts)} rounds",
    ]
    ours_mean, ref_mean = figures[0], figures[1]
    return Measurement(
        "benchmark", f"`procctl benchmark` against `hyperfine` on `{COMMAND}`, --runs {RUNS}", "means agree within σ1 + σ2", figures,
        f"{ours_mean.median:.2f} ± {sorted(sigmas['procctl benchmark'])[len(verdicts) // 2]:.2f} ms",
        f"{ref_mean.median:.2f} ± {sorted(sigmas['hyperfine'])[len(verdicts) // 2]:.2f} ms (hyperfine)",
        ours_mean.median / ref_mean.median, "mean of procctl benchmark ÷ mean of hyperfine", agree_sum == len(verdicts), notes,
    )
