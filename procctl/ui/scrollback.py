"""Lines of output as the interactive view keeps them: a bounded scrollback,
each line with its time and its source, decoded by rich's ANSI parser (the
children's own colours survive), searchable, and cut into screen rows —
wrapped, or one row scrolled sideways.

Pure: no terminal, no clock, no widget. The widget (ui/tui/lines.py) asks
`Layout` how many rows a line takes and which segments fill each row.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from procctl import events
from procctl.engine.lines import LineSplitter
from procctl.ui.plain import describe

LIMIT = 10_000
"""Lines kept in memory (the log file on disk has all of them)."""
LINE_CHARS = 16_384
"""Characters kept of one line; the rest is in the log file."""
OWN = "procctl"
"""The source of procctl's own lines (events, notes) in the merged output."""

LEVEL_STYLES = {
    "info": "bold cyan",
    "warning": "bold yellow",
    "error": "bold red",
    "request": "bold magenta",
}
"""procctl's own lines, in their own colours: what it did (info), what went
wrong (warning, error), and what someone asked of it (request)."""

# C0 controls but ESC (the parser's) and TAB (expanded), and DEL: a child's
# BEL or backspace must not reach the terminal.
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0A, 0x1B), *range(0x1C, 0x20), 0x7F])
# rich's parser knows an OSC (a title, a hyperlink) ended by ST only; many
# programs end it with BEL. Given the ST it expects, it takes the whole of it.
_OSC_BEL = re.compile(r"\x1b\]([^\x07\x1b]*)\x07")
_STDERR = Style(color="red", dim=True)
_TIME = Style(dim=True)
_RULE = Style(dim=True)
_MATCH = Style(reverse=True, bold=True)


class Entry:
    """One line and where it came from."""

    __slots__ = ("ts", "instance", "process", "raw", "level", "_text", "_cells")

    def __init__(self, ts: float, instance: str, process: str, raw: str, level: str = "stdout") -> None:
        self.ts = ts
        self.instance = instance
        self.process = process
        self.raw = raw if len(raw) <= LINE_CHARS else raw[:LINE_CHARS] + f" … ({len(raw) - LINE_CHARS:,} more characters in the log)"
        self.level = level
        """'stdout' or 'stderr' for a child's line, else procctl's own (LEVEL_STYLES)."""
        self._text: Text | None = None
        self._cells: int | None = None

    @property
    def own(self) -> bool:
        return self.level in LEVEL_STYLES

    @property
    def text(self) -> Text:
        """The line decoded once: SGR colours kept, every other escape and
        control character gone, tabs expanded. A carriage return shows what
        a terminal would: the text after the last one."""
        if self._text is None:
            raw = self.raw
            if self.own:
                text = Text(raw)
                text.stylize(LEVEL_STYLES[self.level])
            elif raw.isascii() and raw.isprintable():
                text = Text(raw)
            else:
                if "\r" in raw:
                    raw = raw.rstrip("\r").rsplit("\r", 1)[-1]
                if "\x1b]" in raw:
                    raw = _OSC_BEL.sub("\x1b]\\1\x1b\\\\", raw)
                text = Text.from_ansi(raw.translate(_CONTROLS), no_wrap=True, end="")
                text.expand_tabs(8)
            if self.level == "stderr" and not text.spans and not text.style:
                text.stylize(_STDERR)
            self._text = text
        return self._text

    @property
    def cells(self) -> int:
        """Width on screen, without decoding a line that has nothing to decode."""
        if self._cells is None:
            raw = self.raw
            self._cells = len(raw) if raw.isascii() and raw.isprintable() else self.text.cell_len
        return self._cells

    @property
    def plain(self) -> str:
        return self.text.plain


class Scrollback:
    """The last `limit` lines, numbered from the first line ever added, so
    that a number stays valid while older lines fall off the front."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.entries: collections.deque[Entry] = collections.deque(maxlen=limit)
        self.first = 0
        """Number of `entries[0]`: how many lines have fallen off."""

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def end(self) -> int:
        """Number the next line will get."""
        return self.first + len(self.entries)

    def extend(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if len(self.entries) == self.limit:
                self.first += 1
            self.entries.append(entry)

    def clear(self) -> None:
        self.first = self.end
        self.entries.clear()

    def __getitem__(self, number: int) -> Entry:
        return self.entries[number - self.first]

    def search(self, query: str, start: int, *, forward: bool = True) -> int | None:
        """Number of the next line (from `start`, itself included) holding
        `query`, or the previous one going backwards; wraps around once.
        Case-insensitive unless the query has a capital letter."""
        if not query or not self.entries:
            return None
        fold = query == query.lower()
        needle = query.lower() if fold else query
        count = len(self.entries)
        index = min(max(start - self.first, 0), count - 1)
        step = 1 if forward else -1
        entries = self.entries
        for _ in range(count):
            plain = entries[index].plain
            if needle in (plain.lower() if fold else plain):
                return index + self.first
            index = (index + step) % count
        return None


def matcher(query: str) -> re.Pattern[str] | None:
    """The pattern `Scrollback.search` matches, for highlighting."""
    if not query:
        return None
    return re.compile(re.escape(query), 0 if query != query.lower() else re.IGNORECASE)


def entries_from_bytes(data: bytes, instance: str, process: str, ts: float | None = None) -> list[Entry]:
    """A log file's bytes as lines (the file has no times: all get `ts`)."""
    when = time.time() if ts is None else ts
    split = LineSplitter()  # the lines the engine made of the same bytes
    text = split.feed(data) + split.flush()
    return [Entry(when, instance, process, line) for line in text.split("\n")[:-1]]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How lines become rows at a given width."""

    width: int
    timestamps: bool = False
    name_width: int = 0
    """0: no source column (the log of one instance)."""
    wrap: bool = True

    @property
    def prefix_width(self) -> int:
        width = 13 if self.timestamps else 0
        if self.name_width:
            width += self.name_width + 3
        return width

    @property
    def body_width(self) -> int:
        return max(self.width - self.prefix_width, 8)

    def rows(self, entry: Entry) -> int:
        if not self.wrap:
            return 1
        return max(1, math.ceil(entry.cells / self.body_width))

    def prefix(self, entry: Entry, name_style: Style | None) -> list[Segment]:
        segments: list[Segment] = []
        if self.timestamps:
            stamp = time.strftime("%H:%M:%S", time.localtime(entry.ts)) + f".{int(entry.ts * 1000) % 1000:03d} "
            segments.append(Segment(stamp, _TIME))
        if self.name_width:
            name = entry.instance
            if len(name) > self.name_width:
                name = name[: self.name_width - 1] + "…"
            segments.append(Segment(name.ljust(self.name_width), name_style))
            segments.append(Segment(" │ ", _RULE))
        return segments

    def render(self, entry: Entry, console: Console, *, name_style: Style | None = None, match: re.Pattern[str] | None = None,
               scroll_x: int = 0) -> list[list[Segment]]:
        """The rows of one line: the prefix on the first, blank under it on
        the rest (wrapped), or the body from column `scroll_x` (not wrapped)."""
        text = entry.text
        if match is not None:
            text = text.copy()
            text.highlight_regex(match, _MATCH)
        body = list(text.render(console))
        body = [segment for segment in body if segment.text != "\n"]
        prefix = self.prefix(entry, name_style)
        width = self.body_width
        if not self.wrap:
            return [prefix + list(_crop(body, scroll_x, scroll_x + width))]
        cells = entry.cells
        cuts = list(range(width, cells, width)) + [max(cells, 1)]
        pieces = list(Segment.divide(body, cuts)) if cells else [[]]
        blank = [Segment(" " * self.prefix_width)] if self.prefix_width else []
        return [(prefix if i == 0 else blank) + list(piece) for i, piece in enumerate(pieces)]


def _crop(segments: list[Segment], start: int, end: int) -> Iterator[Segment]:
    if start <= 0:
        pieces = list(Segment.divide(segments, [end]))
        yield from pieces[0] if pieces else []
        return
    pieces = list(Segment.divide(segments, [start, end]))
    if len(pieces) > 1:
        yield from pieces[1]


def _level(event: events.Event) -> str:
    if isinstance(event, events.Notice):
        return event.level if event.level in LEVEL_STYLES else "info"
    if isinstance(event, events.Exited):
        return "error" if event.status.failure else "info"
    if isinstance(event, (events.LimitExceeded, events.GaveUp)):
        return "error"
    if isinstance(event, (events.Restarting, events.Skipped)):
        return "warning"
    return "info"


def describe_request(event: events.Requested, own_pid: int) -> str:
    """`web: scaled to 3 (from another terminal, pid 4242)`."""
    subject = "everything" if event.instance == OWN else event.instance
    if event.client_pid is None or event.client_pid == own_pid:
        who = ""
    else:
        who = f" (from another terminal, pid {event.client_pid})"
    return f"{subject}: {event.detail}{who}"


def entries_from_events(batch: Iterable[events.Event], own_pid: int, keep: int = LIMIT) -> list[Entry]:
    """The lines a batch of events adds to the merged output: the children's
    lines, and procctl's own lines for what happened (at most the last
    `keep`: more would only fall off again)."""
    out: list[Entry] = []
    for event in batch:
        if isinstance(event, events.Output):
            level = "stderr" if event.stream == "stderr" else "stdout"
            lines = event.lines()
            if len(lines) > keep:
                lines = lines[-keep:]
            out.extend(Entry(event.ts, event.instance, event.name, line, level) for line in lines)
            continue
        if isinstance(event, events.Requested):
            out.append(Entry(event.ts, OWN, OWN, describe_request(event, own_pid), "request"))
            continue
        if isinstance(event, (events.Paused, events.Resumed)):
            text: str | None = f"{event.instance} {event.kind}"
        else:
            text = describe(event)
        if text is not None:
            out.append(Entry(event.ts, OWN, OWN, text, _level(event)))
    return out[-keep:] if len(out) > keep else out


def skipped_entries(dropped: collections.Counter[str], seen: collections.Counter[str], where: Callable[[str], str]) -> list[Entry]:
    """One line per instance whose output the view had to skip since last
    time (`seen` is updated): where the whole of it is."""
    out = []
    for instance, total in dropped.items():
        new = total - seen[instance]
        if new > 0:
            seen[instance] = total
            out.append(Entry(time.time(), OWN, OWN, f"{new:,} lines of {instance} skipped — see {where(instance)}", "warning"))
    return out
