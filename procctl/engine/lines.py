"""A child's output → lines of text: the one splitter and decoder.

Every sink (the plain and grouped printers, the event stream, the live view,
a log probe) receives the lines this cuts, so they all agree on what a line
is. The log file is not a sink: it gets the bytes as written, before this.

The rules (docs/events.md):
- a line ends at `\\n`, and only there (not at `\\f`, `\\v`, `\\x85`, U+2028);
- a `\\r` right before the `\\n` belongs to the line ending (`\\r\\n`) and is
  dropped; any other `\\r` is part of the line's text. A program that redraws
  a line with `\\r` (a progress bar) has written one line, not many;
- bytes that are not UTF-8 become U+FFFD;
- a line longer than MAX_LINE_BYTES is cut into pieces of that size (at a
  character boundary), so memory stays bounded whatever a child writes;
- what is left when the stream ends is a last line.
"""

from __future__ import annotations

MAX_LINE_BYTES = 64 * 1024
"""A line longer than this is shown in pieces; the log keeps it whole."""


def _decode(whole: bytes | memoryview, carriage_return: bool | None = None) -> str:
    """Whole lines, each ending in a newline, as text (`carriage_return`:
    whether `whole` holds a `\\r`, when the caller knows)."""
    if carriage_return is None:
        carriage_return = b"\r" in whole
    if carriage_return:
        whole = bytes(whole).replace(b"\r\n", b"\n")
    return str(whole, "utf-8", "replace")


def _boundary(data: bytes, cut: int) -> int:
    """`cut`, moved back to the start of a UTF-8 character if it falls inside one."""
    start = cut
    while start > cut - 3 and start > 0 and data[start] & 0xC0 == 0x80:
        start -= 1
    return start if start > 0 else cut


class LineSplitter:
    """Cuts one stream into whole lines of text, keeping at most
    MAX_LINE_BYTES pending."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> str:
        """The complete lines now available (possibly none: '')."""
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending += data
            if len(self._pending) < MAX_LINE_BYTES:
                return ""
            return self._cut_endless()
        # The lines are decoded from a view of the chunk: in a flood (chunks
        # of 256 KiB) each copy of it costs as much as a system call's.
        end = cut + 1
        if self._pending:
            whole: bytes | memoryview = self._pending + memoryview(data)[:end]
            text = _decode(whole)
        else:
            whole = memoryview(data)[:end] if end < len(data) else data
            text = _decode(whole, data.find(b"\r", 0, end) >= 0)
        self._pending = data[end:]
        if len(self._pending) >= MAX_LINE_BYTES:
            text += self._cut_endless()
        return text

    def _cut_endless(self) -> str:
        # An endless line: show it in pieces, each a line of its own, so that
        # memory stays bounded; the log file keeps the bytes as written.
        pending, pieces = self._pending, []
        while len(pending) >= MAX_LINE_BYTES:
            cut = _boundary(pending, MAX_LINE_BYTES) if len(pending) > MAX_LINE_BYTES else MAX_LINE_BYTES
            pieces.append(pending[:cut] + b"\n")
            pending = pending[cut:]
        self._pending = pending
        return _decode(b"".join(pieces))

    def flush(self) -> str:
        """What is left when the stream ends, as a last line."""
        rest, self._pending = self._pending, b""
        return _decode(rest + b"\n") if rest else ""
