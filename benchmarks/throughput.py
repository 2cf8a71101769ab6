"""Spawn throughput (2000 × /bin/true) and output throughput (1 GiB of lines)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    BenchError,
    Figure,
    Measurement,
    fmt,
    procctl,
    ratio_of,
    rounds_of,
    timed,
    tool,
)

# --------------------------------------------------------------------- spawn


def spawn(rounds: int, quick: bool) -> Measurement:
    return _spawn("spawn", 200 if quick else 2000, rounds, with_parallel=True)


def spawn_many(rounds: int, quick: bool) -> Measurement:
    """The same at 20,000 jobs, where procctl's start-up weighs less (GNU
    parallel, at a few hundred jobs a second, is left out: a round would take
    over a minute)."""
    return _spawn("spawn 20k", 2000 if quick else 20000, rounds, with_parallel=False)


def _spawn(name: str, jobs: int, rounds: int, *, with_parallel: bool) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        (root / "procfile.toml").write_text(
            textwrap.dedent(f"""
                [settings]
                max_parallel = 8
                fail_fast = false
                [process.t]
                cmd = ["/bin/true"]
                each = {{ range = [1, {jobs}] }}
            """)
        )
        runners: dict[str, Callable[[], float]] = {
            "procctl run -j 8": lambda: jobs / timed([*procctl(), "run", "--plain"], cwd=root),
            "xargs -P 8": lambda: jobs / timed(f"seq {jobs} | xargs -P 8 -n 1 /bin/true", cwd=root, shell=True),
        }
        notes = []
        parallel = tool("parallel") if with_parallel else None
        if parallel:
            runners["GNU parallel -j 8"] = lambda: jobs / timed([parallel, "-j", "8", "/bin/true", ":::", *map(str, range(1, jobs + 1))], cwd=root)
        elif with_parallel:
            notes.append("GNU parallel is not installed here: its row is skipped")
        values = rounds_of(rounds, runners)
    figures = [Figure(name, "jobs/s", v, ours=name.startswith("procctl")) for name, v in values.items()]
    ours, xargs = figures[0], figures[1]
    ratio = ratio_of(ours, xargs)
    notes.append(f"the whole `procctl run` is timed, interpreter start-up included: median {jobs / ours.median:.2f} s against {jobs / xargs.median:.2f} s for xargs")
    return Measurement(
        name, f"{jobs} × /bin/true at -j 8, whole `procctl run --plain`", "≥ 1.0 × xargs -P 8 (jobs/s)", figures,
        f"{fmt(ours.median)} jobs/s", f"{fmt(xargs.median)} jobs/s (xargs -P 8)", ratio, "jobs/s of procctl ÷ jobs/s of xargs -P 8",
        ratio is not None and ratio >= 1.0, notes,
    )


# --------------------------------------------------------------------- output

GENERATOR = """
import sys
line = b"x" * 99 + b"\\n"
block = line * ((1 << 20) // 100)
left = int(sys.argv[1])
out = sys.stdout.buffer
while left > 0:
    chunk = block if left >= len(block) else block[:left]
    out.write(chunk)
    left -= len(chunk)
out.flush()
"""


def _own_cpu_s(proc: subprocess.Popen[bytes]) -> float:
    """User + system seconds of `proc` itself, its children not counted
    (wait4's figures include the children it reaped: the generator): read
    from /proc while it is a zombie, then reaped."""
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.wait()


def _peak_rss(proc: subprocess.Popen[bytes], peaks: list[int]) -> threading.Thread:
    """A thread reading `proc`'s high-water mark (VmHWM) until it exits; the last reading goes to `peaks`."""

    def sample() -> None:
        peak = 0
        try:
            while proc.returncode is None:
                with open(f"/proc/{proc.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
                threading.Event().wait(0.02)
        except (OSError, ValueError):
            pass
        peaks.append(peak)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def output(rounds: int, quick: bool) -> Measurement:
    size = (128 << 20) if quick else (1 << 30)
    honcho_size = (8 << 20) if quick else (32 << 20)
    mib = 1 << 20
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        (root / "gen.py").write_text(GENERATOR)
        # The log rotates every 32 MiB (the default); keeping every piece lets the check below see every byte.
        keep = size // (32 << 20) + 2
        (root / "procfile.toml").write_text(f'[process.gen]\ncmd = ["{sys.executable}", "gen.py", "{size}"]\nlog_keep = {keep}\n')
        peaks: list[int] = []
        cpu: dict[str, list[float]] = {"procctl": [], "tee": []}
        gib = size / (1 << 30)

        def ours() -> float:
            began = time.perf_counter()
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen([*procctl(), "run", "--plain"], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
                sampler = _peak_rss(proc, peaks)
                cpu["procctl"].append(_own_cpu_s(proc) / gib)
                took = time.perf_counter() - began
                sampler.join()
                if proc.returncode != 0:
                    err.seek(0)
                    raise BenchError(f"procctl run failed ({proc.returncode}): {err.read().decode(errors='replace')[-1500:]}")
            logs = root / ".procctl" / "logs"
            logged = sum(path.stat().st_size for path in logs.iterdir() if path.name == "gen.log" or (path.name.startswith("gen.log.") and path.name[8:].isdigit()))
            if logged != size:
                raise BenchError(f"the log holds {logged} bytes, not {size}")
            return size / mib / took

        def tee() -> float:
            began = time.perf_counter()
            generator = subprocess.Popen([sys.executable, "gen.py", str(size)], cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            assert generator.stdout is not None
            relay = subprocess.Popen(["tee", "gen.tee.log"], cwd=root, stdin=generator.stdout, stdout=subprocess.DEVNULL)
            generator.stdout.close()
            cpu["tee"].append(_own_cpu_s(relay) / gib)
            generator.wait()
            took = time.perf_counter() - began
            if generator.returncode or relay.returncode:
                raise BenchError(f"generator | tee failed ({generator.returncode}, {relay.returncode})")
            return size / mib / took

        runners = {
            "procctl run --plain (logged, prefixed)": ours,
            "generator | cat": lambda: size / mib / timed(f"{sys.executable} gen.py {size} | cat > /dev/null", cwd=root, shell=True),
            # What keeping a log costs by itself: the same bytes to a file and to /dev/null, in C.
            "generator | tee log > /dev/null": tee,
        }
        honcho = tool("honcho")
        if honcho:
            (root / "Procfile").write_text(f"gen: {sys.executable} gen.py {honcho_size}\n")
            runners[f"honcho start ({honcho_size // mib} MiB)"] = lambda: honcho_size / mib / timed([honcho, "start", "-f", "Procfile"], cwd=root)
            notes.append(f"honcho is given {honcho_size // mib} MiB only (it relays line by line, at a few MiB/s); its rate is compared per byte")
        else:
            notes.append("honcho is not installed here: its row is skipped")
        values = rounds_of(rounds, runners)
    figures = [Figure(name, "MiB/s", v, ours=name.startswith("procctl")) for name, v in values.items()]
    figures.append(Figure("procctl run --plain (logged, prefixed)", "CPU s/GiB", cpu["procctl"], ours=True))
    figures.append(Figure("generator | tee log > /dev/null", "CPU s/GiB", cpu["tee"]))
    figures.append(Figure("procctl run --plain (logged, prefixed)", "peak RSS MiB", [p / mib for p in peaks], ours=True))
    ours_fig, cat = figures[0], figures[1]
    ratio = ratio_of(ours_fig, cat)
    label = f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / mib:g} MiB"
    notes.append(f"procctl's own peak RSS while relaying {label}: median {statistics.median(peaks) / mib:.1f} MiB, max {max(peaks) / mib:.1f} MiB (kernel high-water mark of the supervisor process)")
    notes.append(
        "CPU s/GiB: user + system time of the relaying process alone (procctl's supervisor, or tee), the generator not counted, "
        "per GiB relayed; procctl's includes its start-up. Less sensitive to the machine's load than MiB/s"
    )
    notes.append("procctl's time includes its start-up and the summary; every byte is also checked to have reached the log files (rotated every 32 MiB, all pieces kept)")
    tee = next(figure for figure in figures if figure.tool.startswith("generator | tee"))
    notes.append(
        f"`tee` writes the same log in C: procctl ÷ tee {ours_fig.median / tee.median:.2f}; cat ÷ tee {cat.median / tee.median:.2f} "
        "(what writing the log file costs by itself, which `cat` to /dev/null does not pay)"
    )
    return Measurement(
        "output", f"one child writing {label} of 100-byte lines, logged and prefixed, stdout to /dev/null", "≥ 0.6 × cat through a pipe", figures,
        f"{fmt(ours_fig.median)} MiB/s", f"{fmt(cat.median)} MiB/s (cat)", ratio, "MiB/s of procctl ÷ MiB/s of generator | cat",
        ratio is not None and ratio >= 0.6, notes,
    )

