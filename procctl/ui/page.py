"""Tables printed once, as `check` prints its plan: kept as plain data, drawn
by rich — or, on a page without colours where every cell fits, written here
as the very text rich would write, without loading rich.

rich draws such a table by padding each cell to its column; loading it
costs more than the rest of `procctl check` together (tests/ui/test_page.py
compares the two on many tables). Whatever rich would do more than pad —
wrap or fold a cell, read markup or an emoji code, measure a wide
character, colour anything — is left to rich: `plain_page` returns None.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.table import Table

# rich's HEAVY_HEAD box, the default of its tables.
_TOP = "┏━┳┓"
_HEAD = "┃┃┃"
_HEAD_RULE = "┡━╇┩"
_ROW = "│││"
_BOTTOM = "└─┴┘"


class Styled(str):
    """A cell's text with the rich style it is drawn in on a terminal (the
    colour of a state); written as it is on a page without colours."""

    style: str

    def __new__(cls, text: str, style: str) -> Styled:
        cell = super().__new__(cls, text)
        cell.style = style
        return cell


class Column:
    __slots__ = ("header", "justify", "no_wrap", "overflow")

    def __init__(self, header: str, justify: str = "left", no_wrap: bool = False, overflow: str = "ellipsis") -> None:
        self.header = header
        self.justify = justify
        self.no_wrap = no_wrap
        self.overflow = overflow


class TableData:
    """A table's title, columns and rows of text: what rich.table.Table is
    given (`add_column`, `add_row`), before anything is drawn."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.columns: list[Column] = []
        self.rows: list[tuple[str, ...]] = []

    def add_column(self, header: str, *, justify: str = "left", no_wrap: bool = False, overflow: str = "ellipsis") -> None:
        self.columns.append(Column(header, justify, no_wrap, overflow))

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def to_rich(self) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self.title or None, title_justify="left")
        for column in self.columns:
            table.add_column(column.header, justify=column.justify, no_wrap=column.no_wrap, overflow=column.overflow)  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(*(Text(str(cell), style=cell.style) if isinstance(cell, Styled) else cell for cell in row))
        return table


def _plain(text: str) -> bool:
    """Text that rich prints as it is: printable ASCII, no markup, no
    `:name:` emoji code, no space at either end."""
    if not (text.isascii() and text.isprintable()) or "[" in text or text != text.strip(" "):
        return False
    between_colons = text.split(":")[1:-1]
    return all(" " in part for part in between_colons)


def plain_table(table: TableData, width: int) -> str | None:
    """The table as rich draws it on a page `width` columns wide without
    colours; None when rich would do more than pad its cells."""
    count = len(table.columns)
    grid = [tuple(column.header for column in table.columns), *table.rows]
    if not count or any(len(row) != count for row in grid) or any(column.justify not in ("left", "right") for column in table.columns):
        return None
    if not all(_plain(cell) for row in grid for cell in row) or not _plain(table.title):
        return None
    widths = [max(len(row[i]) for row in grid) for i in range(count)]
    total = sum(widths) + 3 * count + 1  # a space on each side of each cell, and the rules
    if total > width or len(table.title) > total:
        return None

    def rule(box: str) -> str:
        return box[0] + box[2].join(box[1] * (w + 2) for w in widths) + box[3]

    def row(cells: tuple[str, ...], box: str) -> str:
        padded = (cell.rjust(w) if column.justify == "right" else cell.ljust(w) for cell, w, column in zip(cells, widths, table.columns))
        return box[0] + box[1].join(f" {cell} " for cell in padded) + box[2]

    lines = [table.title.ljust(total)] if table.title else []
    lines += [rule(_TOP), row(grid[0], _HEAD), rule(_HEAD_RULE), *(row(cells, _ROW) for cells in table.rows), rule(_BOTTOM)]
    return "\n".join(lines) + "\n"


def plain_line(line: str, width: int) -> str | None:
    """A line of text as rich prints it `width` columns wide (without markup
    or highlighting): folded between words where it would pass the edge,
    each piece keeping the spaces that followed it up to the edge. None when
    rich would do more (a word wider than the page is cut)."""
    if not _plain(line):
        return None
    pieces: list[str] = []
    start = used = 0
    for word in _words(line):
        size = len(word.rstrip(" "))
        if size > width:
            return None
        if used and size > width - used:
            pieces.append(line[start : start + used])
            start += used
            used = 0
        used += len(word)
    pieces.append(line[start:])
    return "".join(piece[: max(width, len(piece.rstrip(" ")))] + "\n" for piece in pieces)


def _words(line: str) -> list[str]:
    """Each word with the spaces after it (and the first with those before it)."""
    words: list[str] = []
    for part in line.split(" "):
        if part or not words:
            words.append(part)
        words[-1] += " "
    words[-1] = words[-1][:-1]
    return words


def plain_page(tables: list[TableData], lines: list[str], width: int) -> str | None:
    """Tables, then lines of text, as rich prints them `width` columns wide
    without colours; None when any of them needs rich."""
    drawn = [plain_table(table, width) for table in tables] + [plain_line(line, width) for line in lines]
    if any(text is None for text in drawn):
        return None
    return "".join(drawn)  # type: ignore[arg-type]
