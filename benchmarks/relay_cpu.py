"""The output row's relay, taken apart: wall MiB/s, the relaying process's
own CPU (user and system, per GiB) and its context switches, for procctl
(this checkout, or other source trees of it) against cat and tee, rounds
alternating. For comparing versions of the output path (docs/profiling.md).

    python3 benchmarks/relay_cpu.py [--mib 1024] [--rounds 8] [TOOL ...]

TOOL: `procctl` (this checkout), `procctl:SRC` (the procctl package found in
SRC, put first on PYTHONPATH), `cat`, `tee`; all four kinds by default.
Like `benchmarks/run.py --only output`, every byte is checked to be logged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import GENERATOR

TICK = os.sysconf("SC_CLK_TCK")


def _reaped(proc: subprocess.Popen[bytes]) -> tuple[float, float, int]:
    """(user s, system s, context switches) of `proc` itself, read while it is a zombie."""
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        switches = sum(int(line.split()[1]) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if "ctxt_switches" in line)
        return int(fields[11]) / TICK, int(fields[12]) / TICK, switches
    finally:
        proc.wait()


def _round(tool: str, root: Path, size: int) -> tuple[float, float, float, int]:
    began = time.perf_counter()
    if tool.startswith("procctl"):
        env = dict(os.environ)
        if ":" in tool:
            env["PYTHONPATH"] = tool.split(":", 1)[1]
        proc = subprocess.Popen([sys.executable, "-m", "procctl", "run", "--plain"], cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        user, system, switches = _reaped(proc)
        logs = root / ".procctl" / "logs"
        logged = sum(p.stat().st_size for p in logs.iterdir() if p.name == "gen.log" or (p.name.startswith("gen.log.") and p.name[8:].isdigit()))
        if proc.returncode or logged != size:
            sys.exit(f"{tool}: exit {proc.returncode}, {logged} bytes logged of {size}")
    else:
        generator = subprocess.Popen([sys.executable, "gen.py", str(size)], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert generator.stdout is not None
        relay = subprocess.Popen(["cat"] if tool == "cat" else ["tee", "gen.tee.log"], cwd=root, stdin=generator.stdout, stdout=subprocess.DEVNULL)
        generator.stdout.close()
        user, system, switches = _reaped(relay)
        generator.wait()
    return time.perf_counter() - began, user, system, switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("tools", nargs="*", default=["procctl", "cat", "tee"])
    args = parser.parse_args()
    size = args.mib << 20
    gib = size / (1 << 30)
    print(f"{args.mib} MiB, {args.rounds} rounds; load average at the start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="procctl-relay-") as tmp:
        root = Path(tmp)
        (root / "gen.py").write_text(GENERATOR)
        (root / "procfile.toml").write_text(f'[process.gen]\ncmd = ["{sys.executable}", "gen.py", "{size}"]\nlog_keep = {size // (32 << 20) + 2}\n')
        results: dict[str, list[tuple[float, float, float, int]]] = {tool: [] for tool in args.tools}
        for _ in range(args.rounds):
            for tool in args.tools:
                results[tool].append(_round(tool, root, size))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print("| tool | MiB/s median (min–max) | CPU s/GiB median (min–max) | user s/GiB | system s/GiB | context switches per MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for tool, rows in results.items():
        rates = [args.mib / took for took, *_ in rows]
        cpu = [(user + system) / gib for _, user, system, _ in rows]
        print(
            f"| {tool} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | {statistics.median(cpu):.2f} ({min(cpu):.2f}–{max(cpu):.2f}) "
            f"| {statistics.median(u / gib for _, u, _, _ in rows):.2f} | {statistics.median(s / gib for _, _, s, _ in rows):.2f} "
            f"| {statistics.median(n for *_, n in rows) / args.mib:.1f} |"
        )


if __name__ == "__main__":
    main()
