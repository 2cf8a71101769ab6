"""A table written without rich is the very text rich writes for it, or is
left to rich."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procctl.cli.common import PAGE_WIDTH, make_console, print_page
from procctl.ui.page import TableData, plain_line, plain_page, plain_table


def _rich(table: TableData, width: int = PAGE_WIDTH) -> str:
    out = io.StringIO()
    make_console(out).print(table.to_rich())
    return out.getvalue()


@pytest.fixture(autouse=True)
def _page_without_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


WORDS = st.text(alphabet="abz AZ09-_./:[]()\\é\t#%+,", max_size=24)
PLAIN_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_./%+(),", max_size=30)


def _table(title: str, headers: list[tuple[str, str]], rows: list[list[str]]) -> TableData:
    table = TableData(title=title)
    for header, justify in headers:
        table.add_column(header, justify=justify)
    for row in rows:
        table.add_row(*row)
    return table


@st.composite
def tables(draw: st.DrawFn, words: st.SearchStrategy[str]) -> TableData:
    count = draw(st.integers(1, 9))
    headers = [(draw(words), draw(st.sampled_from(["left", "right", "center"]))) for _ in range(count)]
    rows = draw(st.lists(st.lists(words, min_size=count, max_size=count), max_size=5))
    return _table(draw(words), headers, rows)


@settings(max_examples=300, deadline=None)
@given(tables(WORDS))
def test_a_table_is_the_text_rich_writes_or_left_to_rich(table: TableData) -> None:
    text = plain_table(table, PAGE_WIDTH)
    if text is not None:
        assert text == _rich(table)


@settings(max_examples=200, deadline=None)
@given(tables(PLAIN_WORDS))
def test_plain_cells_that_fit_are_written_without_rich(table: TableData) -> None:
    for column in table.columns:
        column.justify = "left" if column.justify == "center" else column.justify
    text = plain_table(table, PAGE_WIDTH)
    cells = [column.header for column in table.columns] + [cell for row in table.rows for cell in row] + [table.title]
    wide = sum(max([len(column.header), *(len(row[i]) for row in table.rows)]) + 3 for i, column in enumerate(table.columns)) + 1
    if wide <= PAGE_WIDTH and len(table.title) <= wide and all(cell == cell.strip() for cell in cells):
        assert text == _rich(table)
    elif text is not None:
        assert text == _rich(table)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="ab:[é", min_size=1, max_size=30), min_size=1, max_size=14), st.lists(st.integers(1, 3), min_size=14, max_size=14), st.integers(8, 60))
def test_a_line_is_folded_as_rich_folds_it(words: list[str], gaps: list[int], width: int) -> None:
    line = "".join(word + " " * gap for word, gap in zip(words, gaps)).rstrip(" ")
    out = io.StringIO()
    make_console_at(out, width).print(line, highlight=False, markup=False)
    text = plain_line(line, width)
    if text is not None:
        assert text == out.getvalue()
    elif all(set(word) <= {"a", "b"} and len(word) <= width for word in words):
        pytest.fail(f"a line of plain words was left to rich: {line!r}")


@pytest.mark.parametrize(("line", "width"), [("aaaa bbbb", 9), ("aaaa bbbb", 8), ("aaaa bbbb cc", 9), ("aaaa    bbbb", 6), ("aa bb cc dd", 5)])
def test_a_line_at_the_edge_is_folded_as_rich_folds_it(line: str, width: int) -> None:
    out = io.StringIO()
    make_console_at(out, width).print(line, highlight=False, markup=False)
    assert plain_line(line, width) == out.getvalue()


def make_console_at(out: io.StringIO, width: int) -> object:
    from rich.console import Console

    return Console(file=out, width=width)


def test_what_rich_would_change_is_left_to_it() -> None:
    fits = [("name", "left")]
    assert plain_table(_table("", fits, [["web"]]), PAGE_WIDTH) == _rich(_table("", fits, [["web"]]))
    for cell in ("[bold]x[/bold]", "say :smile: now", "café", "a\tb", " padded", "x" * 200):
        table = _table("", fits, [[cell]])
        assert plain_table(table, PAGE_WIDTH) is None, cell
    # A title wider than its table would wrap; a line wider than the page too.
    assert plain_table(_table("a long title over a narrow table", fits, [["web"]]), PAGE_WIDTH) is None
    assert plain_page([], ["y" * (PAGE_WIDTH + 1)], PAGE_WIDTH) is None


def test_a_page_on_a_file_is_written_without_rich_and_with_it_alike(tmp_path: object) -> None:
    table = _table("plan: pool of 2", [("level", "right"), ("process", "left")], [["0", "web"], ["1", "worker"]])
    lines = ["/srv/app/procfile.toml: valid; 2 processes"]

    class Page(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return False

    without = Page()
    print_page([table], lines, without)
    expected = io.StringIO()
    console = make_console(expected)
    console.print(table.to_rich())
    console.print(lines[0], highlight=False, markup=False)
    assert without.getvalue() == expected.getvalue()
    assert plain_page([table], lines, PAGE_WIDTH) == expected.getvalue()
