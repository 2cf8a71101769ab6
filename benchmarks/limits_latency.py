"""Latency of `memory` enforcement: from the moment a child's memory crosses
its limit to the `limit_exceeded` event, and to the child's exit; and how far
over the limit the tree got.

    python benchmarks/limits_latency.py [--rounds 5] [--interval 1s] [--mechanism watchdog|cgroup]

The child holds 70 MiB, then allocates 40 MiB more in one step (a few
milliseconds). Under the watchdog it writes the time just after touching the
last page: the crossing. Under a cgroup the kernel ends it during that step,
so the figure runs from the time it wrote just before the step. The
supervisor runs in-process so the event's own timestamp is exact. An event
that comes before the reference time counts as zero.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from procctl import events
from procctl.bus import Bus
from procctl.config.loader import load_manifest
from procctl.config.plan import build_plan
from procctl.engine.cgroups import DISABLE_VAR, Host
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor

CHILD = """
import random, sys, time
def hold(mib):
    # Touch every page, with no temporary copy that would double the peak.
    block = bytearray(mib << 20)
    block[::4096] = b"\\x01" * ((mib << 20) // 4096)
    return block
below = hold(70)
time.sleep(1.5 + random.random())
open(sys.argv[1] + ".before", "w").write(str(time.time()))
above = hold(40)
open(sys.argv[1], "w").write(str(time.time()))
time.sleep(600)
"""


LIMIT = 100 << 20


def one_round(root: Path, interval: str) -> tuple[float, float, float]:
    """(reference → event, reference → exit, bytes over the limit at the event)."""
    crossed = root / "crossed"
    before = root / "crossed.before"
    crossed.unlink(missing_ok=True)
    before.unlink(missing_ok=True)
    (root / "child.py").write_text(CHILD)
    (root / "procfile.toml").write_text(
        textwrap.dedent(f"""
            [settings]
            metrics_interval = "{interval}"
            [process.hog]
            cmd = ["{sys.executable}", "child.py", "{crossed}"]
            limits = {{ memory = "100MiB" }}
        """)
    )
    manifest = load_manifest(root / "procfile.toml")
    bus = Bus()
    seen: dict[str, float] = {}

    def watch(event: events.Event) -> None:
        if isinstance(event, events.LimitExceeded):
            seen["event"] = event.ts
            seen["over"] = event.value - LIMIT
        elif isinstance(event, events.Exited):
            seen["exit"] = event.ts

    bus.subscribe(watch)
    asyncio.run(Supervisor(build_plan(manifest), bus, StateDir.beside(manifest.path)).run())
    reference = crossed if crossed.exists() else before
    at = float(reference.read_text())
    return max(seen["event"] - at, 0.0), max(seen["exit"] - at, 0.0), seen["over"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--mechanism", choices=("watchdog", "cgroup"), default="watchdog")
    args = parser.parse_args()
    if args.mechanism == "watchdog":
        os.environ[DISABLE_VAR] = "off"
    else:
        host = Host.create(("memory",))
        if host is None:
            sys.exit("no cgroup with the memory controller can be created here")
        host.close()
    with tempfile.TemporaryDirectory() as tmp:
        results = [one_round(Path(tmp), args.interval) for _ in range(args.rounds)]
    to_event = [r[0] for r in results]
    to_exit = [r[1] for r in results]
    over = [r[2] / (1 << 20) for r in results]
    print(f"{args.mechanism}, metrics_interval {args.interval}, {args.rounds} rounds")
    print(f"crossing → limit_exceeded event: median {statistics.median(to_event):.3f}s, min {min(to_event):.3f}s, max {max(to_event):.3f}s")
    print(f"crossing → child exited:         median {statistics.median(to_exit):.3f}s, min {min(to_exit):.3f}s, max {max(to_exit):.3f}s")
    print(f"memory over the limit at the event: median {statistics.median(over):.1f} MiB, max {max(over):.1f} MiB")


if __name__ == "__main__":
    main()
