"""A small lexer of POSIX shell quoting, enough to tell where a placeholder
stands in a command string: in an unquoted word, inside double quotes,
inside single quotes, in a comment — or somewhere no quoting makes safe
(backticks, `$((…))`, `${…}`, `$'…'`, a here-document, `((…))`). Pure.

It splits a script into simple commands and those into words, each with its
span in the text and, when nothing in it is expanded, its value (what the
shell passes on). `$(…)` is read as a script of its own, at its place in the
same text. `case … esac` is followed far enough that a pattern's `)` does not
end a `$(…)`. What it does not model it reports as a region to refuse, never
as a guess.
"""

from __future__ import annotations

from typing import NamedTuple

PLACEHOLDER = "{item}"

_WORD_END = " \t\n;&|()<>"


# (Plain classes, not dataclasses: `check` and `run` import this module at
# every start and need not import dataclasses for it.)


class Word:
    __slots__ = ("start", "end", "value", "slots", "scripts")

    def __init__(self, start: int, end: int, value: str | None) -> None:
        self.start = start
        self.end = end
        self.value = value
        """What the shell makes of it, with the placeholder kept as written;
        None when something in it is expanded (a variable, `$(…)`, a glob…)."""
        self.slots: list[tuple[int, str]] = []
        """(offset of a placeholder in the text, 'bare' | 'double' | 'single')."""
        self.scripts: list[Script] = []
        """The `$(…)` inside it."""

    def __repr__(self) -> str:
        return f"Word(start={self.start!r}, end={self.end!r}, value={self.value!r}, slots={self.slots!r}, scripts={self.scripts!r})"


class Script:
    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[list[Word]] = []

    def __repr__(self) -> str:
        return f"Script(commands={self.commands!r})"


class Region(NamedTuple):
    """A stretch of the text where a placeholder cannot be quoted safely (or,
    for a comment, need not be: it is left as written). (A named tuple: made
    at every start, a dataclass would cost 0.3 ms more.)"""

    start: int
    end: int
    reason: str
    """What it is; empty for a comment, where the placeholder stays as written."""
    fix: str = ""
    """How to write it instead, when there is a better way than passing the item as data."""


class _Value:
    """A word's value as it is read; `None` once something in it is expanded."""

    def __init__(self) -> None:
        self.parts: list[str] | None = []

    def add(self, text: str) -> None:
        if self.parts is not None:
            self.parts.append(text)

    def expanded(self) -> None:
        self.parts = None

    def result(self) -> str | None:
        return "".join(self.parts) if self.parts is not None else None


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.regions: list[Region] = []

    # ------------------------------------------------------------ scripts

    def script(self, i: int, closer: bool) -> tuple[Script, int]:
        """Commands from `i` to the end of the text, or (`closer`) to the `)`
        that ends a `$(`. Returns the script and the index after it."""
        text, n = self.text, len(self.text)
        script, current = Script(), []
        depth = 0  # subshell parentheses open inside this script
        cases = 0  # `case` statements open: their `)` ends a pattern
        heredocs: list[tuple[str, bool]] = []

        def end_command() -> None:
            nonlocal current
            if current:
                script.commands.append(current)
            current = []

        while i < n:
            c = text[i]
            if c in " \t":
                i += 1
            elif c == "\\" and text.startswith("\\\n", i):
                i += 2
            elif c == "\n":
                end_command()
                i += 1
                if heredocs:
                    i = self._heredoc_bodies(i, heredocs)
                    heredocs = []
            elif c == "#":
                stop = text.find("\n", i)
                stop = n if stop < 0 else stop
                self.regions.append(Region(i, stop, ""))
                i = stop
            elif c == ")":
                end_command()
                i += 1
                if depth > 0:
                    depth -= 1
                elif cases > 0:
                    pass  # the end of a case pattern
                elif closer:
                    return script, i
            elif c == "(":
                end_command()
                if text.startswith("((", i):
                    stop = self._matching(i + 2, "(", ")", depth=2)
                    self.regions.append(Region(i, stop, "an arithmetic command ((…))"))
                    i = stop
                else:
                    depth += 1
                    i += 1
            elif c in ";&|":
                end_command()
                while i < n and text[i] in ";&|":
                    i += 1
            elif c in "<>":
                i = self._redirection(i, heredocs)
            else:
                word, i = self.word(i)
                if not current and word.value in ("case", "esac"):
                    cases += 1 if word.value == "case" else -1 if cases else 0
                current.append(word)
        end_command()
        return script, i

    def _redirection(self, i: int, heredocs: list[tuple[str, bool]]) -> int:
        text = self.text
        if text.startswith("<<<", i):
            return i + 3
        if text.startswith("<<", i):
            i += 2
            strip = text.startswith("-", i)
            i += 1 if strip else 0
            while i < len(text) and text[i] in " \t":
                i += 1
            word, i = self.word(i)
            delimiter = "".join(ch for ch in text[word.start : word.end] if ch not in "'\"\\")
            heredocs.append((delimiter, strip))
            return i
        i += 1
        while i < len(text) and text[i] in "<>&|":
            i += 1
        return i

    def _heredoc_bodies(self, i: int, heredocs: list[tuple[str, bool]]) -> int:
        text = self.text
        for delimiter, strip in heredocs:
            start = i
            while i < len(text):
                stop = text.find("\n", i)
                stop = len(text) if stop < 0 else stop
                line = text[i:stop]
                i = min(stop + 1, len(text))
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
            self.regions.append(Region(start, i, "a here-document"))
        return i

    # -------------------------------------------------------------- words

    def word(self, i: int) -> tuple[Word, int]:
        text, n = self.text, len(self.text)
        word, value = Word(i, i, None), _Value()
        while i < n and text[i] not in _WORD_END:
            c = text[i]
            if c == "\\":
                if not text.startswith("\\\n", i):
                    value.add(text[i + 1 : i + 2])
                i += 2
            elif c == "'":
                stop = text.find("'", i + 1)
                stop = n if stop < 0 else stop
                self._slots(i + 1, stop, "single", word)
                value.add(text[i + 1 : stop])
                i = stop + 1
            elif c == '"':
                i = self._double(i + 1, word, value)
            elif c == "`":
                i = self._backticks(i)
                value.expanded()
            elif c == "$":
                i = self._dollar(i, word, value)
            elif text.startswith(PLACEHOLDER, i):
                word.slots.append((i, "bare"))
                value.add(PLACEHOLDER)
                i += len(PLACEHOLDER)
            else:
                if c in "*?[" or (c == "~" and i == word.start):
                    value.expanded()  # a pattern, or a home directory
                value.add(c)
                i += 1
        word.end = min(i, n)
        word.value = value.result()
        return word, word.end

    def _slots(self, start: int, stop: int, context: str, word: Word) -> None:
        at = self.text.find(PLACEHOLDER, start, stop)
        while at >= 0:
            word.slots.append((at, context))
            at = self.text.find(PLACEHOLDER, at + len(PLACEHOLDER), stop)

    def _double(self, i: int, word: Word, value: _Value) -> int:
        """Inside "…" from `i`; the index after the closing quote."""
        text, n = self.text, len(self.text)
        while i < n and text[i] != '"':
            c = text[i]
            if c == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
                if text[i + 1] != "\n":
                    value.add(text[i + 1])
                i += 2
            elif c == "`":
                i = self._backticks(i)
                value.expanded()
            elif c == "$":
                i = self._dollar(i, word, value)
            elif text.startswith(PLACEHOLDER, i):
                word.slots.append((i, "double"))
                value.add(PLACEHOLDER)
                i += len(PLACEHOLDER)
            else:
                value.add(c)
                i += 1
        return i + 1

    def _backticks(self, i: int) -> int:
        text, j = self.text, i + 1
        while j < len(text) and text[j] != "`":
            j += 2 if text[j] == "\\" else 1
        stop = min(j + 1, len(text))
        self.regions.append(Region(i, stop, "backticks", fix="write $(…) instead, where procctl quotes it"))
        return stop

    def _dollar(self, i: int, word: Word, value: _Value) -> int:
        """At a `$`: the index after what it starts. A lone `$` is a character."""
        text, n = self.text, len(self.text)
        nxt = text[i + 1 : i + 2]
        if text.startswith("$((", i):
            stop = self._matching(i + 3, "(", ")", depth=2)
            self.regions.append(Region(i, stop, "an arithmetic expansion $((…))"))
        elif nxt == "(":
            inner, stop = self.script(i + 2, closer=True)
            word.scripts.append(inner)
        elif nxt == "{":
            stop = self._matching(i + 2, "{", "}", depth=1)
            reason = "a parameter expansion ${…}"
            if text.startswith("${item}", i):
                self.regions.append(Region(i, stop, "${item}", fix="that is a shell variable: write {item} for the placeholder, or $PROCCTL_ITEM"))
            else:
                self.regions.append(Region(i, stop, reason))
        elif nxt in ("'", '"'):
            close = text.find(nxt, i + 2)
            stop = n if close < 0 else close + 1
            self.regions.append(Region(i, stop, f"${nxt}…{nxt} quoting"))
        elif nxt.isdigit() or (nxt and nxt in "@*#?$!-"):
            stop = i + 2
        elif nxt.isalpha() or nxt == "_":
            stop = i + 1
            while stop < n and (text[stop].isalnum() or text[stop] == "_"):
                stop += 1
        else:
            value.add("$")
            return i + 1
        value.expanded()
        return stop

    def _matching(self, i: int, opener: str, closer: str, depth: int) -> int:
        """The index after the closer that brings `depth` open ones to none,
        skipping single-quoted text and escapes."""
        text = self.text
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                stop = text.find("'", i + 1)
                i = len(text) if stop < 0 else stop + 1
                continue
            depth += 1 if c == opener else -1 if c == closer else 0
            i += 1
            if depth == 0:
                return i
        return len(text)


def lex(text: str) -> tuple[Script, list[Region]]:
    """The script of `text` and the regions where a placeholder may not stand."""
    lexer = _Lexer(text)
    script, _ = lexer.script(0, closer=False)
    return script, lexer.regions
