"""A scrollback on screen: the merged output pane and the full-screen log.

A Line API widget: only the rows in sight are drawn, so 10,000 lines cost no
more per frame than 40. Rows come from `scrollback.Layout` (wrapped, or one
row scrolled sideways); the widget keeps where each line's first row is, and
follows the end until the user scrolls up (like `less +F`), picking up again
once they scroll back to the end.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

from rich.style import Style
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from procctl.ui.scrollback import Entry, Layout, Scrollback, matcher


class LinesView(ScrollView, can_focus=True):
    """Lines of a `Scrollback`, with an optional source column and time."""

    DEFAULT_CSS = """
    LinesView {
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    """
    BINDINGS = [
        Binding("j", "scroll_down", "down", show=False),
        Binding("k", "scroll_up", "up", show=False),
        Binding("g", "scroll_home", "top", show=False),
        Binding("G", "scroll_end", "end", show=False),
    ]

    timestamps: reactive[bool] = reactive(False)
    wrap: reactive[bool] = reactive(True)

    def __init__(
        self,
        scrollback: Scrollback,
        *,
        name_width: int = 0,
        name_style: Callable[[Entry], Style | None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.scrollback = scrollback
        self.name_width = name_width
        self._name_style = name_style or (lambda entry: None)
        self.follow = True
        """At the end, and staying there as lines arrive."""
        self.pattern_text = ""
        self._match: re.Pattern[str] | None = None
        self.current: int | None = None
        """Number of the line the last search landed on."""
        self._starts: list[int] = [0]
        """Row where each kept line begins, and one past the last: minus
        `_starts[0]` it is the row on screen."""
        self._first = scrollback.first
        self._layout: Layout | None = None
        self._widest = 0
        self._cache: LRUCache[tuple[int, int], list[Strip]] = LRUCache(512)

    # ------------------------------------------------------------ layout

    def row_layout(self) -> Layout:
        width = self.scrollable_content_region.width or self.size.width or 80
        layout = self._layout
        if layout is None or layout.width != width or layout.timestamps != self.timestamps or layout.wrap != self.wrap or layout.name_width != self.name_width:
            layout = self._layout = Layout(width, timestamps=self.timestamps, name_width=self.name_width, wrap=self.wrap)
            self._reflow(layout)
        return layout

    def _reflow(self, layout: Layout) -> None:
        """Every line's rows again (the width or a setting changed); keep the
        line at the top of the screen at the top."""
        top = self.line_at(round(self.scroll_y)) if len(self._starts) > 1 else None
        self._cache.clear()
        starts = [0]
        total = 0
        widest = 0
        rows = layout.rows
        for entry in self.scrollback.entries:
            total += rows(entry)
            starts.append(total)
            if not layout.wrap:
                widest = max(widest, entry.cells)
        self._starts = starts
        self._first = self.scrollback.first
        self._widest = widest
        self._resize()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif top is not None:
            self.scroll_to(y=self.row_of(top), animate=False, immediate=True)

    def _resize(self) -> None:
        layout = self._layout
        height = self._starts[-1] - self._starts[0]
        width = layout.prefix_width + self._widest if layout is not None and not layout.wrap else 0
        self.virtual_size = Size(width, height)

    def row_of(self, number: int) -> int:
        """First screen row of line `number`."""
        index = min(max(number - self.scrollback.first, 0), len(self._starts) - 1)
        return self._starts[index] - self._starts[0]

    def line_at(self, row: int) -> int:
        """Number of the line shown at screen row `row`."""
        index = bisect.bisect_right(self._starts, row + self._starts[0]) - 1
        return self.scrollback.first + min(max(index, 0), max(len(self._starts) - 2, 0))

    # ------------------------------------------------------------ content

    def lines_added(self) -> None:
        """Take in what was added to (and fell off) the scrollback."""
        layout = self._layout
        if layout is None or not self.size:
            return
        scrollback = self.scrollback
        fallen = scrollback.first - self._first
        if fallen:
            fallen = min(fallen, len(self._starts) - 1)
            removed_rows = self._starts[fallen] - self._starts[0]
            del self._starts[:fallen]
            self._first = scrollback.first
            self._cache.clear()
            if not self.follow and removed_rows:
                # Keep the same line under the reader's eye.
                self.scroll_to(y=max(self.scroll_y - removed_rows, 0), animate=False, immediate=True)
        have = len(self._starts) - 1
        total = self._starts[-1]
        rows = layout.rows
        entries = scrollback.entries
        for index in range(have, len(entries)):
            entry = entries[index]
            total += rows(entry)
            self._starts.append(total)
            if not layout.wrap and entry.cells > self._widest:
                self._widest = entry.cells
        self._resize()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def reset(self) -> None:
        """The scrollback was replaced or cleared: lay it all out again."""
        self._layout = None
        self._starts = [0]
        self.refresh()

    # ------------------------------------------------------------ scrolling

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.follow = round(new_value) >= self.max_scroll_y

    def watch_timestamps(self) -> None:
        if self._layout is not None:
            self._layout = None
            self.refresh()

    def watch_wrap(self) -> None:
        self.watch_timestamps()

    def on_resize(self) -> None:
        self.row_layout()

    def action_scroll_end(self) -> None:
        self.follow = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    # ------------------------------------------------------------ search

    def search(self, query: str, *, forward: bool = True, again: bool = False) -> bool:
        """Go to the next (or previous) line holding `query`; False if none."""
        if query != self.pattern_text:
            self.pattern_text = query
            self._match = matcher(query)
            self._cache.clear()
            self.refresh()
        if not query:
            self.current = None
            return False
        if self.current is not None and again:
            start = self.current + (1 if forward else -1)
        elif self.current is not None:
            start = self.current
        else:
            start = self.line_at(round(self.scroll_y)) if forward else self.line_at(round(self.scroll_y) + self.size.height - 1)
        found = self.scrollback.search(query, start, forward=forward)
        self.current = found
        if found is None:
            return False
        self.row_layout()
        row = self.row_of(found)
        if not (self.scroll_y <= row < self.scroll_y + self.scrollable_content_region.height):
            self.scroll_to(y=max(row - self.scrollable_content_region.height // 3, 0), animate=False, immediate=True)
        self.follow = False
        self.refresh()
        return True

    # ------------------------------------------------------------ drawing

    def _rows(self, number: int, layout: Layout, scroll_x: int) -> list[Strip]:
        key = (number, scroll_x if not layout.wrap else 0)
        strips = self._cache.get(key)
        if strips is None:
            entry = self.scrollback[number]
            rows = layout.render(entry, self.app.console, name_style=self._name_style(entry), match=self._match, scroll_x=scroll_x)
            strips = [Strip(row) for row in rows]
            self._cache[key] = strips
        return strips

    def render_line(self, y: int) -> Strip:
        layout = self.row_layout()
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        base = self._starts[0]
        if len(self._starts) < 2 or row + base >= self._starts[-1]:
            return Strip.blank(width, self.rich_style)
        index = bisect.bisect_right(self._starts, row + base) - 1
        number = self.scrollback.first + index
        strips = self._rows(number, layout, scroll_x)
        part = row + base - self._starts[index]
        strip = strips[part] if part < len(strips) else Strip.blank(width)
        if number == self.current and part == 0:
            strip = strip.apply_style(Style(underline=True))
        return strip.crop_extend(0, width, self.rich_style).apply_style(self.rich_style)
