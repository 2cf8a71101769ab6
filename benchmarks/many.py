"""10,000 running instances: `up -d`, `status --json` while they run, the
live view's frame at that many rows, and `down`."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import time
from pathlib import Path

import fleet
import redraw
from harness import BenchError, Figure, Measurement, fmt, procctl, progress

ROWS = 10_000
STATUS_CALLS = 5
FDS_PER_CHILD = 8
"""Descriptors procctl holds per running child (three pipes, a pidfd, its log
and its time index), with room: it raises its own soft limit to what the
pool needs, up to the hard one, which a benchmark run as root may raise."""


def _room_for(rows: int) -> tuple[int, str | None]:
    """Give procctl (a child of this process) room for `rows` children by
    raising the hard limit of open files; how many fit, and why not all."""
    needed = 64 + FDS_PER_CHILD * rows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= needed:
        return rows, None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, needed))
        return rows, None
    except (ValueError, OSError):
        # Six descriptors a running child, and some for procctl itself.
        fit = (hard - 200) // 6 // 500 * 500
        return fit, f"the hard limit of open files is {hard} and may not be raised here (no CAP_SYS_RESOURCE): {fit} running children fit in it"


def scale_many(rounds: int, quick: bool) -> Measurement:
    wanted = 1000 if quick else ROWS
    frames = 10 if quick else 20
    rows, cramped = _room_for(wanted)
    notes: list[str] = []
    figures: list[Figure] = []
    folded = redraw.frame_times(wanted, frames, width=200, height=50)
    figures.append(Figure(f"procctl live table (no keys), {wanted} rows, 200×50 screen", "ms per frame", folded, ours=True))
    notes.append(
        f"{frames} frames of the live table at {wanted} rows, each folding one redraw period's events (every row sampled at 1 Hz, drawn at 8 "
        f"frames/s): median {fmt(statistics.median(folded))} ms, max {fmt(max(folded))} ms"
    )
    if cramped:
        notes.append(f"not measured at {wanted} processes: {cramped}; at {rows} instead")
    why = fleet._can_take(rows)
    if rows < 1 or why:
        raise BenchError(f"{rows} processes cannot run here: {why}")
    ups: list[float] = []
    downs: list[float] = []
    calls: list[float] = []
    listed: list[int] = []
    for round_number in range(rounds):

        def while_up(root: Path) -> None:
            for _ in range(STATUS_CALLS):
                began = time.perf_counter()
                done = subprocess.run([*procctl(), "status", "--json"], cwd=root, capture_output=True, timeout=120)
                calls.append(time.perf_counter() - began)
                if done.returncode != 0:
                    raise BenchError(f"procctl status failed at {rows} processes: {done.stderr.decode(errors='replace')[-500:]}")
                listed.append(sum(1 for row in json.loads(done.stdout)["instances"] if row["state"] == "running"))

        up, down, _ = fleet._up_down(rows, while_up=while_up)
        ups.append(up)
        downs.append(down)
        progress(f"  round {round_number + 1}/{rounds}: up -d {up:.2f} s, status --json median {statistics.median(calls[-STATUS_CALLS:]):.3f} s, down {down:.2f} s")
    figures += [
        Figure(f"procctl up -d, {rows} × sleep", "s until all run", ups, ours=True),
        Figure(f"procctl status --json at {rows} running", "s per call", calls, ours=True),
        Figure(f"procctl down of {rows}", "s until all gone", downs, ours=True),
    ]
    everyone = all(count == rows for count in listed)
    notes.append(f"`status --json` listed {min(listed)}–{max(listed)} running of {rows} in its {len(listed)} calls")
    notes.append("`procctl down` returns once the supervisor has stopped and every instance is gone")
    frame, status, gone = statistics.median(folded), max(calls), statistics.median(downs)
    met = frame <= 50.0 and status <= 1.0 and gone <= 5.0 and everyone and rows == wanted
    return Measurement(
        "scale 10k", f"{rows} × `sleep 600` running (`up -d`): status, live redraw, down",
        "status --json ≤ 1 s (every call), redraw ≤ 50 ms, down ≤ 5 s", figures,
        f"status {fmt(max(calls))} s (max), {fmt(frame)} ms a frame, down {fmt(gone)} s", "-", None, "-", met, notes,
    )
