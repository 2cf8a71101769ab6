"""Frame time of procctl's live view at many rows, measured in-process: a
`LiveModel` of N running instances with metrics, sparklines and output, drawn
by `Renderer` into a rich console on a StringIO (no terminal is needed)."""

from __future__ import annotations

import io
import time

FPS = 8
"""The live view's redraw rate (procctl/ui/live.py)."""


def frame_times(rows: int, frames: int, *, width: int, height: int) -> list[float]:
    """Milliseconds of each of `frames` frames: folding one redraw period's
    events (every row is sampled once a second, so rows / FPS samples a frame,
    and a few output lines), then rendering and printing the frame."""
    from rich.console import Console

    from procctl import events
    from procctl.states import State
    from procctl.ui.live import InstanceInfo, LiveModel, Renderer

    now = [1_000_000.0]
    processes = 10
    names = [(f"svc{i % processes}", f"svc{i % processes}.{i // processes + 1}") for i in range(rows)]
    model = LiveModel([InstanceInfo(instance, process) for process, instance in names], max_parallel=rows, clock=lambda: now[0])
    start: list[events.Event] = []
    for number, (process, instance) in enumerate(names):
        start.append(events.StateChanged(process, instance, state=State.RUNNING, reason="", ts=now[0] - 60))
        start.append(events.Started(process, instance, pid=10_000 + number, ts=now[0] - 60))
        start.append(events.Output(process, instance, stream="stdout", text=f"{instance} listening on port {8000 + number}\n"))
    model.fold(start)

    def sample(number: int, tick: int) -> events.Event:
        process, instance = names[number]
        load = (number * 7 + tick * 13) % 100
        return events.Sample(
            process, instance, pid=10_000 + number, cpu_percent=float(load), cpu_time_s=tick * 0.1, rss_bytes=(20 + load) << 20,
            peak_rss_bytes=120 << 20, read_bytes=number * 4096, write_bytes=tick * 8192, threads=4, children=1,
        )

    # A full sparkline history for every row before the first timed frame.
    for tick in range(12):
        model.fold([sample(number, tick) for number in range(rows)])
    renderer = Renderer(model, get_time=lambda: now[0])
    per_frame = max(rows // FPS, 1)
    times = []
    cursor = 0
    for frame in range(frames):
        batch: list[events.Event] = []
        for _ in range(per_frame):
            batch.append(sample(cursor % rows, 12 + cursor // rows))
            cursor += 1
        for k in range(20):
            process, instance = names[(frame * 37 + k) % rows]
            batch.append(events.Output(process, instance, stream="stdout", text=f"GET /item/{frame}/{k} 200 3ms\n"))
        now[0] += 1.0 / FPS
        console = Console(file=io.StringIO(), width=width, height=height, force_terminal=True, color_system="256")
        began = time.perf_counter()
        model.fold(batch)
        console.print(renderer.render(width, height))
        times.append((time.perf_counter() - began) * 1000)
    return times
