"""Latency of the memory watchdog: from the moment a child's RSS crosses its
`memory` limit to the `limit_exceeded` event, and to the child's exit.

    python benchmarks/limits_latency.py [--rounds 5] [--interval 1s]

The child holds 70 MiB, then allocates 40 MiB more in one step (a few
milliseconds) and writes the time just after touching the last page; the
supervisor runs in-process so the event's own timestamp is exact. An event
that comes before the child wrote its time counts as zero.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from procctl import events
from procctl.config.manifest import load_manifest
from procctl.config.plan import build_plan
from procctl.engine.store import StateDir
from procctl.engine.supervisor import Supervisor

CHILD = """
import random, sys, time
below = bytearray(b"\\x01" * (70 << 20))
time.sleep(1.5 + random.random())
above = bytearray(b"\\x01" * (40 << 20))
open(sys.argv[1], "w").write(str(time.time()))
time.sleep(600)
"""


def one_round(root: Path, interval: str) -> tuple[float, float]:
    crossed = root / "crossed"
    crossed.unlink(missing_ok=True)
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
    bus = events.Bus()
    seen: dict[str, float] = {}

    def watch(event: events.Event) -> None:
        if isinstance(event, events.LimitExceeded):
            seen["event"] = event.ts
        elif isinstance(event, events.Exited):
            seen["exit"] = event.ts

    bus.subscribe(watch)
    asyncio.run(Supervisor(build_plan(manifest), bus, StateDir.beside(manifest.path)).run())
    if not crossed.exists():
        return 0.0, 0.0
    at = float(crossed.read_text())
    return max(seen["event"] - at, 0.0), max(seen["exit"] - at, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", default="1s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [one_round(Path(tmp), args.interval) for _ in range(args.rounds)]
    to_event = [r[0] for r in results]
    to_exit = [r[1] for r in results]
    print(f"metrics_interval {args.interval}, {args.rounds} rounds")
    print(f"crossing → limit_exceeded event: median {statistics.median(to_event):.3f}s, min {min(to_event):.3f}s, max {max(to_event):.3f}s")
    print(f"crossing → child exited:         median {statistics.median(to_exit):.3f}s, min {min(to_exit):.3f}s, max {max(to_exit):.3f}s")


if __name__ == "__main__":
    main()
