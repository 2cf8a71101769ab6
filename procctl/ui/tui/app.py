"""The interactive live view: `procctl run` on a terminal, and `procctl top`.

A Textual app over a `Supervision` (ui/face.py): a table of instances with a
cursor, the merged output with scrollback below it, a one-line footer of
keys. Every action on an instance is a control verb sent through the face
(`tui.verbs`) — the same requests `procctl pause`, `procctl restart`, … send
— and everything that changes, whoever changed it, comes back as an event.
The view never starts or signals a process itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from procctl.errors import ProcctlError
from procctl.ui.face import Supervision
from procctl.ui.keys import footer
from procctl.ui.live import Renderer
from procctl.ui.live_model import LiveModel
from procctl.ui.scrollback import LIMIT, OWN, Entry, Scrollback, entries_from_bytes, entries_from_events, skipped_entries
from procctl.ui.tui.lines import LinesView
from procctl.ui.tui.screens import Confirm, HelpScreen, LogScreen
from procctl.ui.tui.table import ColumnHeads, InstanceTable
from procctl.ui.tui.verbs import VerbKeys

FPS = 8
"""Times a second the view takes in new events and redraws what changed."""
LOG_BYTES = 8 << 20
"""At most this much of a log file is read when its view opens."""

_OWN_STYLE = Style(bold=True)


class LiveApp(VerbKeys):
    """The view. `exit_message` says why it ended on its own (top)."""

    TITLE = "procctl"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #summary { height: 1; }
    #heads { height: 1; }
    #output { height: 1fr; min-height: 3; border-top: solid $primary-darken-2; border-title-color: $text-muted; }
    #output:focus { border-top: solid $accent; }
    #filter { dock: bottom; height: 1; border: none; padding: 0 1; display: none; }
    #filter.shown { display: block; }
    #keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("enter", "open_log", "log", show=False),
        Binding("r", "restart", "restart", show=False),
        Binding("s", "stop_start", "stop/start", show=False),
        Binding("p", "pause", "pause", show=False),
        Binding("plus,+", "scale(1)", "scale up", show=False),
        Binding("minus,-", "scale(-1)", "scale down", show=False),
        Binding("K", "signal", "signal", show=False),
        Binding("slash", "filter", "filter", show=False),
        Binding("t", "timestamps", "timestamps", show=False),
        Binding("w", "wrap", "wrap", show=False),
        Binding("question_mark", "help", "help", show=False),
        Binding("escape", "clear_filter", "clear filter", show=False),
        Binding("q", "quit_key", "quit", show=False),
        Binding("ctrl+c", "leave", "quit", show=False, priority=True),
    ]

    def get_driver_class(self) -> Any:
        # A closed terminal must not hang the view's shutdown.
        from procctl.ui.tui.terminal import surviving

        return surviving(super().get_driver_class())

    def __init__(self, face: Supervision, *, tail: int | None = None, fps: float = FPS) -> None:
        super().__init__()
        self.face = face
        self.model = LiveModel(face.instances, max_parallel=face.max_parallel)
        self.model.fold(face.seed)
        self.model.fold(face.backlog)
        self.renderer = Renderer(self.model)
        self.scrollback = Scrollback()
        self.scrollback.extend(entries_from_events(face.backlog, face.client_pid))
        self.tail = tail
        self.fps = fps
        self.timestamps = False
        self.leaving = 0
        """Times the user asked to leave (run: the second forces)."""
        self.exit_message = ""
        self._skipped_seen: collections.Counter[str] = collections.Counter()
        self._rows = len(self.model.rows)

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept by reference: `query_one` looks at the screen on top, which
        # may be the log of an instance while these go on updating below it.
        self.summary = Static(id="summary")
        self.table = InstanceTable(self.model, self.renderer, id="table")
        self.output = LinesView(self.scrollback, name_width=self._name_width(), name_style=self._name_style, id="output")
        self.filter_box = Input(id="filter", placeholder="filter by name or state (Enter: keep, Esc: clear)")
        yield self.summary
        yield ColumnHeads(self.renderer, id="heads")
        yield self.table
        yield self.output
        yield self.filter_box
        yield Static(footer("table", "leave" if self.face.attached else "quit"), id="keys")

    def _name_width(self) -> int:
        return max(min(max((len(name) for name in self.model.rows), default=4), 28), len(OWN))

    def _name_style(self, entry: Entry) -> Style | None:
        if entry.instance == OWN:
            return _OWN_STYLE
        return Style.parse(self.renderer.color(entry.process))

    def on_mount(self) -> None:
        table = self.table
        table.focus()
        if self.tail is not None:
            output = self.output
            output.styles.height = self.tail + 1
            table.styles.max_height = None
            table.styles.height = "1fr"
        self.pull()
        self.set_interval(1 / self.fps, self.pull)

    # ------------------------------------------------------------ events

    def pull(self) -> None:
        """Take in what the supervisor did since the last frame."""
        face = self.face
        queue = face.queue
        dropped = queue.dropped
        batch = queue.drain()
        model = self.model
        model.fold(batch)
        entries = skipped_entries(dropped, self._skipped_seen, self._log_of) if dropped else []
        entries += entries_from_events(batch, face.client_pid)
        table = self.table
        if len(model.rows) != self._rows:
            self._rows = len(model.rows)
            table.rows_changed()
            self.output.name_width = self._name_width()
            table.refresh()
        else:
            table.refresh_changed()
        if entries:
            self.scrollback.extend(entries)
            self.output.lines_added()
            for screen in self.screen_stack:
                if isinstance(screen, LogScreen):
                    mine = [entry for entry in entries if entry.instance == screen.instance]
                    if mine:
                        screen.scrollback.extend(mine)
                        screen.lines_added()
        self._draw_summary()
        if face.ended and face.attached:
            self.exit_message = "the supervisor has stopped"
            self.exit(0)

    def _draw_summary(self) -> None:
        header = self.renderer.header()
        if self.face.attached:
            header.append("  (attached: q leaves it running)", style="dim")
        if self.leaving and not self.face.attached:
            header.append("  stopping — Ctrl-C again forces", style="bold yellow")
        progress = self.renderer.progress()
        # A fixed height, changed only when a progress bar comes or goes: a
        # frame then repaints what changed instead of laying out the screen.
        height = 1 + (len(self.renderer.bars) if progress is not None else 0)
        if self.summary.styles.height is None or self.summary.styles.height.value != height:
            self.summary.styles.height = height
        self.summary.update(Group(header, progress) if progress is not None else header, layout=False)
        output = self.output
        state = "following" if output.follow else "scrolled up — End follows"
        title = f"output · {len(self.scrollback):,} lines · {state}" + (" · times" if self.timestamps else "")
        if output.border_title != title:
            output.border_title = title
        for screen in self.screen_stack:
            if isinstance(screen, LogScreen):
                screen.update_title()

    def _log_of(self, instance: str) -> str:
        row = self.model.rows.get(instance)
        return row.log_path if row is not None and row.log_path else f"logs of {instance}"


    def action_open_log(self) -> None:
        if isinstance(self.screen, LogScreen):
            return
        row = self.table.selected
        if row is None:
            return
        # Take in what is queued first, so that no line is both in the file
        # read below and among the events that follow.
        self.pull()
        scrollback = Scrollback(LIMIT)
        source = row.log_path or "no log file"
        if row.log_path:
            from procctl.engine.logread import read_log_tail

            try:
                data = read_log_tail(Path(row.log_path), LIMIT, max_bytes=LOG_BYTES)
                scrollback.extend(entries_from_bytes(data, row.name, row.process))
            except OSError as exc:
                source = f"{row.log_path}: {exc.strerror or exc}"
            except ProcctlError as exc:
                source = str(exc)
        self.push_screen(LogScreen(row.name, row.process, scrollback, source=source, timestamps=self.timestamps))

    def action_filter(self) -> None:
        box = self.filter_box
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.table.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.input.remove_class("shown")
            self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.filter_box
        box.value = ""
        box.remove_class("shown")
        table = self.table
        table.set_filter("")
        table.focus()

    def action_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self.output.timestamps = self.timestamps
        for screen in self.screen_stack:
            if isinstance(screen, LogScreen):
                screen.set_timestamps(self.timestamps)
        self._draw_summary()

    def action_wrap(self) -> None:
        output = self.output
        output.wrap = not output.wrap

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.face.attached))

    def action_quit_key(self) -> None:
        """q: leaving `top` costs nothing; in `run` it stops every process,
        so it asks (Ctrl-C, as outside the view, does not)."""
        if self.face.attached:
            self.action_leave()
            return
        if self.leaving:
            question = "Force the stop? Every process still running gets SIGKILL now."
        else:
            question = "Stop everything? Each process gets its stop signal (as on Ctrl-C), and procctl ends."

        def answered(yes: bool | None) -> None:
            if yes:
                self.action_leave()

        self.push_screen(Confirm(question), answered)

    def action_leave(self) -> None:
        self.leaving += 1
        self.face.leave()
        if self.face.attached:
            self.exit(0)
        else:
            self._draw_summary()


@contextlib.asynccontextmanager
async def running(app: LiveApp, on_failure: Callable[[], None]) -> AsyncIterator[LiveApp]:
    """Run the view on the current loop (beside the supervisor) for the
    length of the block. A view that ends on its own before that (it failed)
    calls `on_failure`."""
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    task = loop.create_task(app.run_async())
    await asyncio.sleep(0)
    if sys.version_info >= (3, 12):
        # Textual makes the loop's tasks eager (3.12+); the supervisor's
        # tasks keep the ordering they were written for.
        loop.set_task_factory(factory)
    closing = False

    def ended(_: asyncio.Task[int | None]) -> None:
        if not closing:
            on_failure()

    task.add_done_callback(ended)
    try:
        yield app
    finally:
        closing = True
        app.exit()
        await task
