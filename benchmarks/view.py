"""The interactive view at 1000 instances (SPEC: redraw ≤ 50 ms; keys answered
within 100 ms while 1000 instances run).

`frame_times`: the Textual app headless (its own test harness) over 1000 rows
with metrics, sparklines and output, fed one redraw period's events a frame;
a frame is what Textual's update timer does — fold the events, lay out and
render every widget that changed, and hand the update to the (headless)
driver.

`key_latencies`: the real `procctl run` of 1000 × `sleep 600` on a
pseudo-terminal of 200 × 50, read through a terminal emulator (pyte): the
time from writing `j` (or `k`) to the pty until the screen shows the
selection on its new row — the whole path, from the input thread to the bytes drawn, while
the same loop supervises and samples 1000 process trees.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

FPS = 8
"""The view's redraw rate (procctl/ui/tui/app.py)."""


def frame_times(rows: int, frames: int, *, width: int, height: int) -> list[float]:
    """Milliseconds of each of `frames` frames of the interactive view."""
    from procctl import events
    from procctl.bus import EventQueue
    from procctl.states import State
    from procctl.ui.live_model import InstanceInfo
    from procctl.ui.tui.app import LiveApp

    processes = 10
    names = [(f"svc{i % processes}", f"svc{i % processes}.{i // processes + 1}") for i in range(rows)]

    class Face:
        attached = False
        queue = EventQueue(max_output_events=512)
        instances = [InstanceInfo(instance, process) for process, instance in names]
        seed: list[events.Event] = []
        backlog: list[events.Output] = []
        max_parallel = rows
        client_pid = os.getpid()
        ended = False

        async def call(self, verb: str, args: dict[str, object]) -> object:
            return {}

        def leave(self) -> None:
            pass

    face = Face()

    def sample(number: int, tick: int) -> events.Event:
        process, instance = names[number]
        load = (number * 7 + tick * 13) % 100
        return events.Sample(
            process, instance, pid=10_000 + number, cpu_percent=float(load), cpu_time_s=tick * 0.1, rss_bytes=(20 + load) << 20,
            peak_rss_bytes=120 << 20, read_bytes=number * 4096, write_bytes=tick * 8192, threads=4, children=1,
        )

    for number, (process, instance) in enumerate(names):
        face.queue(events.StateChanged(process, instance, state=State.RUNNING, reason=""))
        face.queue(events.Started(process, instance, pid=10_000 + number))
        face.queue(events.Output(process, instance, stream="stdout", text=f"\x1b[32m{instance}\x1b[0m listening on port {8000 + number}\n"))
    for tick in range(12):
        for number in range(rows):
            face.queue(sample(number, tick))
    times: list[float] = []

    async def main() -> None:
        # A long interval: the frames below are driven (and timed) by hand.
        app = LiveApp(face, fps=0.01)
        async with app.run_test(size=(width, height)) as pilot:
            await pilot.pause()
            app.pull()
            await pilot.pause()
            per_frame = max(rows // FPS, 1)
            cursor = 0
            for frame in range(frames):
                for _ in range(per_frame):
                    face.queue(sample(cursor % rows, 12 + cursor // rows))
                    cursor += 1
                for k in range(20):
                    process, instance = names[(frame * 37 + k) % rows]
                    face.queue(events.Output(process, instance, stream="stdout", text=f"GET /item/{frame}/{k} 200 3ms\n"))
                began = time.perf_counter()
                app.pull()
                app.screen._on_timer_update()  # what Textual's update timer does each frame
                times.append((time.perf_counter() - began) * 1000)
                await pilot.pause()

    asyncio.run(main())
    return times


def _selected(screen: object) -> str | None:
    """The instance drawn in reverse video (the table's selection), if any."""
    for line in screen.buffer.values():  # type: ignore[attr-defined]
        cells = [line[x] for x in range(0, 3)]
        if all(cell.reverse and cell.data.strip() for cell in cells):
            return "".join(line[x].data for x in range(0, 12)).split()[0]
    return None


def key_latencies(argv: list[str], root: Path, presses: int, *, cols: int = 200, rows: int = 50, ready: str = "running 1000 ") -> list[float]:
    """Milliseconds from each key written to the pty (`j`, `k`, `j`, … so
    that the selection never runs off the end) to the selection drawn on
    its new row. `argv` is procctl's command line (a `run` of many
    instances in `root`)."""
    import pyte

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    for name in ("NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    proc = subprocess.Popen(argv, cwd=root, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)

    def pump(timeout: float) -> bool:
        """Feed what the view wrote, if it wrote within `timeout`; whether it did."""
        ready_fds, _, _ = select.select([master], [], [], timeout)
        if ready_fds:
            try:
                stream.feed(os.read(master, 1 << 20))
                return True
            except OSError:
                pass
        return False

    def catch_up(quiet: float, limit: float) -> None:
        """Read the screen until the view has been quiet for `quiet` seconds.
        A pseudo-terminal hands over a few KiB a read: what the view drew
        before a key is pressed must be read first, or the key's time
        includes parsing it (1,700 reads were left behind at 1000 rows)."""
        deadline = time.monotonic() + limit
        while pump(quiet) and time.monotonic() < deadline:
            pass

    def wait(condition: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the view never showed {what}")
            pump(0.01)

    latencies: list[float] = []
    try:
        wait(lambda: ready in "\n".join(screen.display), 120, repr(ready))
        wait(lambda: _selected(screen) is not None, 30, "a selection")
        catch_up(0.2, 60)  # the first frames of a full table, all read
        for press in range(presses):
            before = _selected(screen)
            began = time.perf_counter()
            os.write(master, b"j" if press % 2 == 0 else b"k")
            wait(lambda: _selected(screen) not in (None, before), 30, "the selection move")
            latencies.append((time.perf_counter() - began) * 1000)
            catch_up(0.05, 10)
        return latencies
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        os.close(master)
