"""The table of instances: one row each, a cursor, a filter.

A Line API widget over `LiveModel`'s rows, drawn with the same `Renderer`
cells as the non-interactive live view (ui/live.py), and only the rows in
sight: at 1000 instances a frame draws the 40 on screen, not 1000.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from procctl.ui.live import Renderer
from procctl.ui.live_model import LiveModel, Row

_CURSOR = Style(reverse=True)


def matches(row: Row, query: str) -> bool:
    """The filter: part of the instance's name, its process or its state."""
    query = query.lower()
    return query in row.name.lower() or query in row.status_text.lower() or query in row.state.text


class ColumnHeads(Static):
    """The table's column titles, laid out as the rows below them."""

    def __init__(self, renderer: Renderer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.renderer = renderer

    def render(self) -> Text:
        width = self.size.width or 80
        text = Text(no_wrap=True, overflow="crop")
        for column in self.renderer.columns(width):
            head = column.header.rjust(column.width) if column.right else column.header.ljust(column.width)
            text.append(head + " ", style="bold")
        text.append("last line", style="bold")
        return text


class InstanceTable(ScrollView, can_focus=True):
    """Rows of instances with a cursor; mouse click selects, the wheel scrolls."""

    DEFAULT_CSS = """
    InstanceTable {
        height: auto;
        max-height: 60%;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "up", show=False),
        Binding("down,j", "move(1)", "down", show=False),
        Binding("pageup", "page(-1)", "page up", show=False),
        Binding("pagedown", "page(1)", "page down", show=False),
        Binding("home", "jump(0)", "first", show=False),
        Binding("end", "jump(-1)", "last", show=False),
    ]

    class Highlighted(Message):
        """The cursor moved to another instance."""

        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, model: LiveModel, renderer: Renderer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.renderer = renderer
        self.filter = ""
        self.shown: list[Row] = []
        self.cursor = 0
        self._selected: str | None = None
        self._base: Style | None = None
        """The widget's own style (background), computed once."""
        self._strips: dict[int, tuple[object, Strip]] = {}
        """Each row as last drawn, by its index in `shown`, with what it showed."""
        self.rows_changed()

    @property
    def selected(self) -> Row | None:
        if 0 <= self.cursor < len(self.shown):
            return self.shown[self.cursor]
        return None

    def rows_changed(self) -> None:
        """Rows were added, or the filter changed: recompute what shows and
        keep the cursor on the same instance when it still shows."""
        rows = self.model.rows.values()
        self.shown = [row for row in rows if matches(row, self.filter)] if self.filter else list(rows)
        if self._selected is not None:
            for index, row in enumerate(self.shown):
                if row.name == self._selected:
                    self.cursor = index
                    break
        self.cursor = min(self.cursor, max(len(self.shown) - 1, 0))
        self._remember()
        self._strips.clear()
        self.virtual_size = Size(0, len(self.shown))

    def set_filter(self, query: str) -> None:
        self.filter = query
        self.rows_changed()
        self._show_cursor()
        self.refresh()

    def select(self, name: str) -> bool:
        for index, row in enumerate(self.shown):
            if row.name == name:
                self._move_to(index)
                return True
        return False

    def _remember(self) -> None:
        row = self.selected
        name = row.name if row else None
        if name != self._selected:
            self._selected = name
            self.post_message(self.Highlighted(name))

    def _move_to(self, index: int) -> None:
        if not self.shown:
            return
        self.cursor = min(max(index, 0), len(self.shown) - 1)
        self._remember()
        self._show_cursor()
        self.refresh()

    def _show_cursor(self) -> None:
        height = self.scrollable_content_region.height or 1
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def action_move(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(self.scrollable_content_region.height - 1, 1))

    def action_jump(self, where: int) -> None:
        self._move_to(len(self.shown) - 1 if where < 0 else where)

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_y) + event.y
        if 0 <= index < len(self.shown):
            self._move_to(index)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._strips.clear()

    def _pieces(self, index: int, width: int) -> tuple[tuple[str, Style | None], ...]:
        renderer = self.renderer
        columns = renderer.columns(width)
        fixed = sum(column.width + 1 for column in columns)
        return tuple(renderer.row_line(self.shown[index], columns, max(width - fixed, 1), self.model.clock()))

    def refresh_changed(self) -> None:
        """Redraw the rows in sight whose cells changed since they were drawn
        (a frame of a thousand quiet instances redraws the few that moved)."""
        width = self.scrollable_content_region.width
        top = int(self.scroll_y)
        for y in range(self.scrollable_content_region.height):
            index = top + y
            if index >= len(self.shown):
                break
            drawn = self._strips.get(index)
            if drawn is None or drawn[0] != (self._pieces(index, width), index == self.cursor, width):
                self.refresh_line(index)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = int(self.scroll_y) + y
        base = self._base
        if base is None:
            base = self._base = self.rich_style
        if index >= len(self.shown):
            return Strip.blank(width, base)
        pieces = self._pieces(index, width)
        key = (pieces, index == self.cursor, width)
        drawn = self._strips.get(index)
        if drawn is not None and drawn[0] == key:
            return drawn[1]
        segments = [Segment(text, style) for text, style in pieces]
        length = sum(cell_len(text) for text, _ in pieces)
        if length < width:
            segments.append(Segment(" " * (width - length)))
        elif length > width:
            segments = list(Segment.divide(segments, [width]))[0]
        # One pass of styles under the cells' own: the widget's, and the
        # cursor's on its row (a Strip per style would cost a cache each).
        style = base + _CURSOR if index == self.cursor else base
        strip = Strip(list(Segment.apply_style(segments, style)), width)
        self._strips[index] = (key, strip)
        return strip
