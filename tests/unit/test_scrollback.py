"""The interactive view's scrollback: decoding (rich's ANSI parser), rows
(wrapped or sideways), search, the bound, and the lines events become."""

from __future__ import annotations

from rich.console import Console

from procctl import events
from procctl.states import State
from procctl.ui.scrollback import Entry, Layout, Scrollback, entries_from_bytes, entries_from_events

CONSOLE = Console(width=200, color_system="truecolor", force_terminal=True)


def _rows(layout: Layout, entry: Entry, **kwargs: object) -> list[str]:
    return ["".join(segment.text for segment in row) for row in layout.render(entry, CONSOLE, **kwargs)]  # type: ignore[arg-type]


def test_colours_survive_and_every_other_control_is_gone() -> None:
    entry = Entry(0.0, "web.1", "web", "\x1b[1;32mok\x1b[0m\tdone\x07\x1b[2J\x08 \x1b]0;title\x07end")
    assert entry.plain == "ok      done end"
    (span,) = entry.text.spans
    assert (span.start, span.end) == (0, 2)
    assert span.style.color.number == 2 and span.style.bold  # type: ignore[union-attr]
    # A carriage return shows what a terminal would.
    assert Entry(0.0, "a", "a", "10%\r50%\r100%").plain == "100%"
    assert Entry(0.0, "a", "a", "plain ascii").cells == 11


def test_wrapped_rows_hold_the_whole_line_under_its_prefix() -> None:
    entry = Entry(0.0, "web.1", "web", "0123456789" * 5)
    layout = Layout(30, name_width=5)
    assert layout.prefix_width == 8 and layout.rows(entry) == 3
    rows = _rows(layout, entry)
    assert rows[0] == "web.1 │ 0123456789012345678901"
    assert rows[1].startswith(" " * 8) and rows[2].strip() == "234567890123456789"[-len(rows[2].strip()):]
    assert "".join(row[8:] for row in rows) == "0123456789" * 5
    # Not wrapped: one row, scrolled sideways from column 10.
    flat = Layout(30, name_width=5, wrap=False)
    assert flat.rows(entry) == 1
    assert _rows(flat, entry, scroll_x=10) == ["web.1 │ 0123456789012345678901"]


def test_timestamps_prefix_each_line() -> None:
    entry = Entry(3723.5, "a", "a", "x")
    (row,) = _rows(Layout(80, timestamps=True), entry)
    assert row[2] == ":" and row[5] == ":" and row.endswith(".500 x")


def test_the_scrollback_is_bounded_and_numbers_stay_valid() -> None:
    back = Scrollback(limit=100)
    back.extend(Entry(0.0, "a", "a", f"line {i}") for i in range(250))
    assert len(back) == 100 and back.first == 150 and back.end == 250
    assert back[150].raw == "line 150" and back[249].raw == "line 249"
    assert back.search("line 2", 150) == 200
    assert back.search("line 2", 201) == 201  # the start itself counts
    assert back.search("line 24", 150) == 240
    assert back.search("line 19", 249, forward=False) == 199
    assert back.search("LINE", 160) is None  # a capital makes it case-sensitive
    assert back.search("Line".lower(), 160) == 160


def test_a_huge_line_is_kept_in_part_and_says_so() -> None:
    entry = Entry(0.0, "a", "a", "y" * 100_000)
    assert entry.raw.endswith("more characters in the log)") and len(entry.raw) < 17_000


def test_events_become_lines_and_own_lines() -> None:
    batch = [
        events.Output("web", "web.1", stream="stderr", text="one\ntwo\n"),
        events.Exited("web", "web.1", status=State.FAILED, code=3, signal=None, duration_s=1.5),
        events.Requested("web", "web", verb="scale", detail="scaled to 3", client_pid=99),
        events.Requested("web", "web", verb="scale", detail="scaled to 2", client_pid=7),
        events.Paused("web", "web.2"),
        events.Sample("web", "web.1", pid=1, cpu_percent=1, cpu_time_s=1, rss_bytes=1, peak_rss_bytes=1, read_bytes=None,
                      write_bytes=None, threads=1, children=0),
    ]
    lines = entries_from_events(batch, own_pid=7)
    assert [(e.instance, e.raw, e.level) for e in lines] == [
        ("web.1", "one", "stderr"),
        ("web.1", "two", "stderr"),
        ("procctl", "web.1 failed with code 3 after 1.50s", "error"),
        ("procctl", "web: scaled to 3 (from another terminal, pid 99)", "request"),
        ("procctl", "web: scaled to 2", "request"),
        ("procctl", "web.2 paused", "info"),
    ]
    assert [e.raw for e in entries_from_bytes(b"a\r\nb\n\nlast", "x", "x")] == ["a", "b", "", "last"]
