"""The live view of `procctl run` on a terminal: a table of every instance
(state, pid, uptime, restarts, exit, CPU, RSS, I/O, sparklines, last line),
the pool's figures, a progress bar for `each` jobs, and the tail of the
merged output.

The view is a bus subscriber through a bounded `EventQueue`: the engine never
waits on it, and when it lags the oldest output is dropped and counted ("N
lines skipped — see the log"). A task on the loop folds the queued events into
`LiveModel` (ui/live_model.py) and redraws at a fixed rate. It never starts
or signals a process.

Rows are drawn as segments of known width rather than through `rich.table`,
whose layout pass measures every cell of every row: at 1000 instances that
alone costs many times the frame budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from procctl.bus import EventQueue
from procctl.ui.live_model import ACTIVE, InstanceInfo, LiveModel, Row
from procctl.ui.sparkline import sparkline
from procctl.ui.writer import Writer
from procctl.ui.tables import STATE_STYLES
from procctl.units import format_duration, format_size

if TYPE_CHECKING:
    from rich.live import Live

FPS = 8
"""Redraws per second."""
MIN_TAIL = 3
MAX_OUTPUT_EVENTS = 512
"""Output events the view's queue holds before it drops the oldest."""

_PALETTE = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow", "bright_green", "bright_magenta", "bright_blue")
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """A child's line made safe to draw: no escape sequences or control
    characters. A line redrawn with `\\r` (a progress bar) shows what a
    terminal would show last: what follows its last `\\r`."""
    if text.isascii() and text.isprintable():
        return text
    return _CONTROL.sub("", text.rpartition("\r")[2].replace("\t", "    "))


def fit(text: str, width: int) -> str:
    """Exactly `width` cells: padded, or cut with an ellipsis."""
    if width <= 0:
        return ""
    if text.isascii():
        if len(text) <= width:
            return text.ljust(width)
        return text[: width - 1] + "…"
    if cell_len(text) <= width:
        return set_cell_size(text, width)
    return set_cell_size(text, width - 1) + "…"



@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    width: int
    right: bool = False
    drop: int = 0
    """Dropped first when the screen is narrow: higher goes first; 0 never."""


class _Lines:
    """Pre-cut lines of (text, style) pieces: drawn without layout work."""

    def __init__(self, lines: list[list[tuple[str, Style | None]]]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self.lines:
            for text, style in line:
                yield Segment(text, style)
            yield newline


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} jobs/s" if speed else "- jobs/s", style="progress.data.speed")


_STYLE_CACHE: dict[str, Style] = {}


def _style(name: str) -> Style | None:
    if not name:
        return None
    style = _STYLE_CACHE.get(name)
    if style is None:
        style = _STYLE_CACHE[name] = Style.parse(name)
    return style


class Renderer:
    """Frames of a `LiveModel` at a given width and height."""

    def __init__(self, model: LiveModel, *, tail: int | None = None, get_time: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.tail = tail
        """Lines of merged output below the table; None fits them to the screen."""
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            _Rate(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            get_time=get_time,
            auto_refresh=False,
            expand=True,
        )
        self._tasks: dict[str, int] = {}
        names = [row.name for row in model.rows.values()]
        self._name_width = min(max([len(n) for n in names] + [4]), 28)
        self._colors: dict[str, str] = {}
        self._columns_key: tuple[int, int] | None = None
        self._columns: list[Column] = []

    def columns(self, width: int) -> list[Column]:
        """The columns that fit `width`, widest name first (kept until the
        width or the longest name changes: every row of a frame asks)."""
        key = (width, len(self.model.rows))
        if self._columns_key != key:
            self._columns_key = key
            self._columns = self._fit_columns(width)
        return self._columns

    def _fit_columns(self, width: int) -> list[Column]:
        name_width = max(self._name_width, min(max((len(n) for n in self.model.rows), default=4), 28))
        columns = [
            Column("name", name_width),
            Column("state", 14),
            Column("pid", 7, right=True, drop=4),
            Column("uptime", 6, right=True, drop=5),
            Column("rst", 3, right=True, drop=6),
            Column("exit", 4, right=True, drop=7),
            Column("cpu", 5, right=True),
            Column("cpu hist", 8, drop=9),
            Column("rss", 8, right=True),
            Column("rss hist", 8, drop=8),
            Column("read", 8, right=True, drop=10),
            Column("write", 8, right=True, drop=10),
        ]
        # Keep at least 24 columns for the last line; drop what matters least.
        while sum(c.width + 1 for c in columns) + 24 > width and any(c.drop for c in columns):
            worst = max(c.drop for c in columns)
            columns = [c for c in columns if c.drop != worst]
        return columns

    def color(self, process: str) -> str:
        """The colour of a process's name, the same wherever it shows."""
        color = self._colors.get(process)
        if color is None:
            color = self._colors[process] = _PALETTE[len(self._colors) % len(_PALETTE)]
        return color

    def header(self) -> Text:
        model = self.model
        counts = model.counts()
        text = Text()
        text.append("procctl", style="bold")
        text.append(f"  running {counts['running']}", style="green" if counts["running"] else "")
        text.append(f"  pool {counts['pooled']}/{model.max_parallel}")
        if model.pool_cap is not None:
            text.append(f" (auto, up to {model.pool_cap})", style="dim")
        text.append(f"  queued {counts['queued']}")
        text.append(f"  done {counts['done']}")
        text.append(f"  failed {counts['failed']}", style="bold red" if counts["failed"] else "")
        text.append(f"  {format_duration(max(model.clock() - model.began, 0.0))}", style="dim")
        if model.regions:
            # Shared memory once, however many processes map it.
            shown = ", ".join(f"{name} {format_size(resident)}/{format_size(size)}" for name, (size, resident) in model.regions.items())
            text.append(f"  shared {shown}", style="dim")
        if model.stopping:
            text.append(f"  {model.stopping}", style="yellow")
        return text

    @property
    def bars(self) -> list[Task]:
        """The progress bars drawn (one per `each` process that has any)."""
        return self._progress.tasks

    def progress(self) -> RenderableType | None:
        """One bar per `each` process that has more jobs than the pool runs at once."""
        shown = False
        for process, (ended, total) in self.model.each_progress().items():
            if total <= max(self.model.max_parallel, 1):
                continue
            task = self._tasks.get(process)
            if task is None:
                task = self._tasks[process] = self._progress.add_task(process, total=total)
            self._progress.update(task, completed=ended, total=total)
            shown = True
        return self._progress.get_renderable() if shown else None

    def row_line(self, row: Row, columns: Sequence[Column], last_width: int, now: float) -> list[tuple[str, Style | None]]:
        pieces: list[tuple[str, Style | None]] = []
        dim = _style("dim")
        active = row.state in ACTIVE
        for column in columns:
            header = column.header
            style: Style | None = None
            if header == "name":
                value = row.name
                style = _style(self.color(row.process))
            elif header == "state":
                value = row.status_text
                style = _style(STATE_STYLES.get(row.state, ""))
            elif header == "pid":
                value = str(row.pid) if row.pid and active else "-"
            elif header == "uptime":
                if active and row.started_ts is not None:
                    value = format_duration(max(now - row.started_ts, 0.0))
                else:
                    value = format_duration(row.last_duration_s)
                    style = dim
            elif header == "rst":
                value = str(row.restarts)
                style = _style("yellow") if row.restarts else None
            elif header == "exit":
                value = row.exit_text
                style = _style("red") if row.exit_text not in ("-", "0") else None
            elif header == "cpu":
                value = f"{row.cpu_percent:.0f}%" if row.cpu_percent is not None and active else "-"
            elif header == "cpu hist":
                value = sparkline(row.cpu_history, column.width, top=100.0)
                style = _style("green" if active else "dim")
            elif header == "rss":
                value = format_size(row.rss_bytes) if row.rss_bytes is not None and active else "-"
            elif header == "rss hist":
                value = sparkline(row.rss_history, column.width)
                style = _style("blue" if active else "dim")
            elif header == "read":
                value = format_size(row.read_bytes)
            else:
                value = format_size(row.write_bytes)
            cell = value.rjust(column.width) if column.right and len(value) <= column.width else fit(value, column.width)
            pieces.append((cell, style))
            pieces.append((" ", None))
        if row.reported and active:
            # What the process says of itself stands in for its last line.
            pieces.append((fit(clean(row.reported), last_width).rstrip(), _style("italic")))
            return pieces
        last = row.last_line or (row.reason if row.state.final else "")
        pieces.append((fit(clean(last), last_width).rstrip(), dim if not row.last_line else None))
        return pieces

    def render(self, width: int, height: int) -> RenderableType:
        model = self.model
        now = model.clock()
        columns = self.columns(width)
        fixed_width = sum(c.width + 1 for c in columns)
        last_width = max(width - fixed_width, 1)
        parts: list[RenderableType] = [self.header()]
        progress = self.progress()
        used = 1
        if progress is not None:
            parts.append(progress)
            used += len(self._progress.tasks)
        rows = list(model.rows.values())
        space = max(height - used - 1, 1)  # minus the table's header line
        if self.tail is None:
            if len(rows) + 1 + MIN_TAIL <= space:
                shown = len(rows)
            else:
                shown = max(space * 2 // 3 - 1, 1)
            tail_lines = max(space - shown - 1 - (1 if shown < len(rows) else 0), 0)
        else:
            tail_lines = max(min(self.tail, space - 2 - 1), 0)
            shown = max(space - (tail_lines + 1 if tail_lines else 0), 1)
            if shown < len(rows):
                shown = max(shown - 1, 1)
        hidden = max(len(rows) - shown, 0)
        if hidden:
            visible = sorted(rows, key=Row.interest)[:shown]
        else:
            visible = rows
        header_style = _style("bold")
        head: list[tuple[str, Style | None]] = []
        for column in columns:
            head.append((column.header.rjust(column.width) if column.right else fit(column.header, column.width), header_style))
            head.append((" ", None))
        head.append(("last line", header_style))
        lines = [head]
        for row in visible:
            lines.append(self.row_line(row, columns, last_width, now))
        if hidden:
            lines.append([(f"… {hidden:,} more hidden (failing, restarting and busiest shown first)", _style("dim"))])
        parts.append(_Lines(lines))
        if tail_lines > 0 and model.tail:
            tail = list(model.tail)[-tail_lines:] if len(model.tail) > tail_lines else list(model.tail)
            name_width = max(min(max(len(instance) for instance, _, _ in tail), 28), 7)
            rule = [("─" * width, _style("dim"))]
            out: list[list[tuple[str, Style | None]]] = [rule]
            for instance, process, text in tail:
                if instance == "procctl":
                    style = _style("yellow")
                    name_style = _style("bold")
                else:
                    style = None
                    name_style = _style(self.color(process))
                out.append([(fit(instance, name_width), name_style), (" │ ", _style("dim")), (fit(clean(text), max(width - name_width - 3, 1)).rstrip(), style)])
            parts.append(_Lines(out))
        return Group(*parts)


class LiveView:
    """The live view: a bus subscriber (`view.queue`) and a redraw task."""

    def __init__(
        self,
        console: Console,
        instances: Sequence[InstanceInfo],
        *,
        max_parallel: int,
        tail: int | None = None,
        fps: float = FPS,
        clock: Callable[[], float] = time.time,
        writer: Writer | None = None,
    ) -> None:
        self.console = console
        self.queue = EventQueue(max_output_events=MAX_OUTPUT_EVENTS)
        self.model = LiveModel(instances, max_parallel=max_parallel, clock=clock)
        self.renderer = Renderer(self.model, tail=tail)
        self.fps = fps
        self._writer = writer
        """What the console writes through; while it still holds a frame,
        the next is not drawn (a terminal held with Ctrl-S costs one frame)."""
        self.frame_s = 0.0
        """Time the last frame took to build and draw."""

    def update(self) -> None:
        """Fold what the queue holds."""
        dropped = self.queue.dropped
        batch = self.queue.drain()
        self.model.note_skipped(dropped)
        self.model.fold(batch)

    def frame(self) -> RenderableType:
        width, height = self.console.size
        return self.renderer.render(width, height - 1)

    def _draw(self, live: Live, *, last: bool = False) -> None:
        began = time.perf_counter()
        self.update()
        if self._writer is not None and self._writer.pending and not last:
            return
        live.update(self.frame(), refresh=True)
        self.frame_s = time.perf_counter() - began

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[LiveView]:
        """Draw from a task on the running loop until the block ends; the last
        frame stays on the screen."""
        from rich.live import Live

        live = Live(console=self.console, auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False, vertical_overflow="crop")

        async def redraw() -> None:
            while True:
                self._draw(live)
                # A slow frame (a huge table on a slow machine) must not eat
                # the loop: wait at least four times what it took.
                await asyncio.sleep(max(1.0 / self.fps, 4 * self.frame_s))

        with live:
            task = asyncio.get_running_loop().create_task(redraw())
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._draw(live, last=True)
