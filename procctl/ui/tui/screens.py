"""The view's other screens: the full-screen log of one instance, the help,
a yes/no question and a one-line prompt."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

from procctl.ui.keys import KEYS, footer
from procctl.ui.scrollback import Scrollback
from procctl.ui.tui.lines import LinesView


class HelpScreen(ModalScreen[None]):
    """The key table; any key closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: auto; max-width: 100%; height: auto; border: round $accent; padding: 0 1; background: $panel; }
    """

    def __init__(self, attached: bool) -> None:
        super().__init__()
        self.attached = attached

    def compose(self) -> ComposeResult:
        table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2, 0, 0))
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("does")
        table.add_column("in", style="dim")
        for key in KEYS:
            table.add_row(key.keys, key.does, {"table": "view", "log": "log", "both": "view, log"}[key.where])
        title = "procctl top: keys (q leaves; the supervisor runs on)" if self.attached else "procctl run: keys (q stops everything)"
        box = Static(table)
        box.border_title = title
        yield box

    def on_key(self, event: object) -> None:
        self.dismiss(None)

    def on_click(self) -> None:
        self.dismiss(None)


class Confirm(ModalScreen[bool]):
    """A yes/no question: y says yes, any other key no."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Static { width: auto; max-width: 90%; height: auto; border: round $warning; padding: 0 1; background: $panel; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        text = Text(self.question + "  ")
        text.append("y", style="bold")
        text.append("es / ")
        text.append("n", style="bold")
        text.append("o")
        yield Static(text)

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if hasattr(event, "stop"):
            event.stop()  # type: ignore[attr-defined]
        self.dismiss(key in ("y", "Y"))


class Prompt(ModalScreen[str | None]):
    """One line of input: Enter gives it, Esc cancels (None)."""

    DEFAULT_CSS = """
    Prompt { align: center bottom; }
    Prompt > Vertical { height: auto; border: round $accent; background: $panel; }
    /* :focus too: Input's own focused border outranks a plain descendant
       rule, and in one row it would leave no room for the text typed. */
    Prompt Input, Prompt Input:focus { border: none; height: 1; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)]

    def __init__(self, question: str, default: str = "") -> None:
        super().__init__()
        self.question = question
        self.default = default
        """The answer when Enter is pressed on an empty line."""

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.question
            yield Input(placeholder=self.default)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or self.default)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LogScreen(Screen[None]):
    """One instance's output, full-screen: its log file's end, then its lines
    as they come; scroll, search, wrap, timestamps."""

    DEFAULT_CSS = """
    LogScreen { layout: vertical; }
    LogScreen #log-title { height: 1; background: $panel; }
    LogScreen LinesView { height: 1fr; }
    LogScreen #log-search { dock: bottom; height: 1; border: none; padding: 0 1; display: none; }
    LogScreen #log-search.shown { display: block; }
    LogScreen #log-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,q", "back", "back", show=False),
        Binding("slash", "search_prompt", "search", show=False),
        Binding("n", "search_again(1)", "next", show=False),
        Binding("N", "search_again(-1)", "previous", show=False),
        Binding("w", "toggle_wrap", "wrap", show=False),
        Binding("end", "follow", "follow", show=False),
    ]

    def __init__(self, instance: str, process: str, scrollback: Scrollback, *, source: str, timestamps: bool) -> None:
        super().__init__()
        self.instance = instance
        self.process = process
        self.scrollback = scrollback
        self.source = source
        """Where the earlier lines came from (the log file), for the title."""
        self._timestamps = timestamps
        self.message = ""

    def compose(self) -> ComposeResult:
        yield Static(id="log-title")
        view = LinesView(self.scrollback, id="log-lines")
        view.timestamps = self._timestamps
        yield view
        yield Input(id="log-search", placeholder="search (Enter: find, Esc: cancel)")
        yield Static(footer("log"), id="log-keys")

    @property
    def view(self) -> LinesView:
        return self.query_one(LinesView)

    def _shown(self) -> LinesView | None:
        """Its lines, or None while it has none: the app's refresh and its
        new lines reach every log screen it holds, one not yet composed or
        being taken down (just popped) among them."""
        try:
            return self.query_one(LinesView)
        except NoMatches:
            return None

    def on_mount(self) -> None:
        self.view.focus()
        self.update_title()

    def update_title(self) -> None:
        view = self._shown()
        if view is None:
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f" {self.instance} ", style="bold reverse")
        count = len(self.scrollback)
        text.append(f"  {count:,} line{'s' if count != 1 else ''}", style="dim")
        text.append("  following" if view.follow else "  scrolled — End follows", style="green" if view.follow else "yellow")
        if not view.wrap:
            text.append("  no wrap (← →)", style="dim")
        if view.pattern_text:
            found = "no match" if view.current is None else "match"
            text.append(f"  /{view.pattern_text}: {found}", style="cyan")
        if self.message:
            text.append(f"  {self.message}", style="bold")
        text.append(f"  {self.source}", style="dim")
        try:
            self.query_one("#log-title", Static).update(text)
        except NoMatches:
            return

    def lines_added(self) -> None:
        view = self._shown()
        if view is not None:
            view.lines_added()
            self.update_title()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_follow(self) -> None:
        self.view.action_scroll_end()
        self.update_title()

    def action_toggle_wrap(self) -> None:
        self.view.wrap = not self.view.wrap
        self.update_title()

    def set_timestamps(self, on: bool) -> None:
        view = self._shown()
        if view is not None:
            view.timestamps = on

    def action_search_prompt(self) -> None:
        search = self.query_one("#log-search", Input)
        search.add_class("shown")
        search.value = self.view.pattern_text
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        search = self.query_one("#log-search", Input)
        search.remove_class("shown")
        self.view.focus()
        self.view.current = None
        self.view.search(event.value)
        self.update_title()

    def on_key(self, event: object) -> None:
        search = self.query_one("#log-search", Input)
        if getattr(event, "key", "") == "escape" and search.has_class("shown"):
            search.remove_class("shown")
            self.view.focus()
            event.stop()  # type: ignore[attr-defined]

    def action_search_again(self, direction: int) -> None:
        if self.view.pattern_text:
            self.view.search(self.view.pattern_text, forward=direction > 0, again=True)
        self.update_title()
