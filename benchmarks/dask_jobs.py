"""`each` jobs on a Dask cluster of this machine: the overhead procctl adds
over Dask itself.

1000 × `sleep 0.05` on a cluster of 2 workers (`procctl cluster up`, every
socket on 127.0.0.1), three ways, round after round:

- `procctl run --plain --executor dask://…`: procctl's pool, logs, events
  and history around each job, the pool's window as procctl sets it;
- a bare Dask client submitting the same subprocess tasks (`client.map` of
  `subprocess.run`, all at once): what Dask alone takes;
- `procctl run --plain -j N` here, N the cluster's worker threads: the same
  jobs without a cluster.

Each is timed whole, from the command's start to its end (interpreter,
imports and connecting to the scheduler included, for both Dask rows).
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from harness import BenchError, Figure, Measurement, Started, fmt, procctl, progress, rounds_of, timed, wait_for

WORKERS = 2
THREADS = 4
"""Per worker: 8 jobs at once on the cluster (the jobs sleep; they do not
need a core each)."""
COMMAND = "sleep 0.05"
TARGET = 1.2

BARE_CLIENT = """
import subprocess, sys
from distributed import Client

def job(item, command):
    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True).returncode

with Client(sys.argv[1], timeout=60, set_as_default=False) as client:
    codes = client.gather(client.map(job, range(int(sys.argv[2])), command=sys.argv[3], pure=False))
sys.exit(1 if any(codes) else 0)
"""


def _cluster(root: Path) -> tuple[Started, str]:
    """`procctl cluster up` in the background; it and its address."""
    out = root / "cluster.json"
    started = Started(
        [*procctl(), "cluster", "up", "--port", "0", "--json", "--workers", str(WORKERS), "--threads", str(THREADS), "--memory", "1GiB"],
        root, stdout=out,
    )  # fmt: skip
    try:
        wait_for(lambda: out.read_bytes().endswith(b"\n"), 180, "procctl cluster up", every=0.05, check=started.check_alive)
        return started, json.loads(out.read_text())["address"]
    except BaseException:
        started.end()
        raise


def dask_overhead(rounds: int, quick: bool) -> Measurement:
    try:
        import distributed
    except ImportError as exc:
        raise BenchError(f"needs procctl[dask] (pip install -e '.[dask]'): {exc}") from None
    jobs = 200 if quick else 1000
    slots = WORKERS * THREADS
    with tempfile.TemporaryDirectory(prefix="procctl-bench-") as tmp:
        root = Path(tmp)
        (root / "procfile.toml").write_text(
            textwrap.dedent(f"""
                [process.job]
                cmd = "{COMMAND}"
                each = {{ range = [1, {jobs}] }}
            """)
        )
        (root / "bare.py").write_text(BARE_CLIENT)
        began = time.perf_counter()
        cluster, address = _cluster(root)
        progress(f"  the cluster ({WORKERS} workers × {THREADS} threads) was up in {time.perf_counter() - began:.1f} s at {address}")
        url = "dask://" + address.split("://", 1)[1]
        try:
            runners = {
                "procctl run --executor dask://…": lambda: timed([*procctl(), "run", "--plain", "--executor", url], cwd=root),
                "bare Dask client (client.map of subprocess.run)": lambda: timed([sys.executable, "bare.py", address, str(jobs), COMMAND], cwd=root),
                f"procctl run -j {slots} (here, no cluster)": lambda: timed([*procctl(), "run", "--plain", "-j", str(slots)], cwd=root),
            }
            values = rounds_of(rounds, runners)
        finally:
            cluster.end()
    figures = [Figure(name, "s", v, ours=name.startswith("procctl run --executor")) for name, v in values.items()]
    ours, bare, local = figures
    ratio = ours.median / bare.median
    ideal = jobs * 0.05 / slots
    notes = [
        f"{jobs} × `{COMMAND}` on {WORKERS} workers × {THREADS} threads of this machine; {slots} at once, so {ideal:.2f} s of sleeping at best",
        "each row timed whole: interpreter start-up, imports and (for both Dask rows) connecting to the scheduler included",
        f"procctl on the cluster: {jobs / ours.median:.0f} jobs/s; bare Dask: {jobs / bare.median:.0f} jobs/s; procctl here: {jobs / local.median:.0f} jobs/s",
        "procctl's row also writes each job's log file, its events and a history row, and keeps twice the cluster's threads in flight",
        f"Dask distributed {distributed.__version__}; the cluster: `procctl cluster up --workers {WORKERS} --threads {THREADS}`, every socket on 127.0.0.1",
    ]
    return Measurement(
        "dask", f"{jobs} × `{COMMAND}` as `each` jobs on a local {WORKERS}-worker Dask cluster, against a bare Dask client",
        f"≤ {TARGET} × a bare Dask client (time)", figures,
        f"{fmt(ours.median)} s", f"{fmt(bare.median)} s (bare Dask client)", ratio, "time of procctl on the cluster ÷ time of a bare Dask client",
        ratio <= TARGET, notes,
    )
