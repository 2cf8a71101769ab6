"""Reading values out of a manifest's tables, each error naming the file,
the line and the key (and the nearest valid key or value).

`Key` is one entry of a declarative table (`config.keys` has one per kind of
table): the key as the manifest writes it, the field of the model it fills,
and how its value is read. The values a key may take when the model says
`Literal[...]` come from the model itself (`choices`).
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from procctl.config import values
from procctl.config.envfile import read_env_file
from procctl.config.manifest import Limits, Settings, SharedRegion
from procctl.errors import ManifestError
from procctl.units import parse_duration, parse_size

KeyPath = tuple[str, ...]


class KeyLines:
    """Line numbers of table headers and keys in TOML source, by key path
    (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str) -> None:
        self._lines: dict[KeyPath, int] = {}
        table: KeyPath = ()
        inside = _Inside()
        for number, line in enumerate(text.splitlines(), start=1):
            if inside.continues(line):
                continue  # a line of a multi-line string or array: no key starts here
            header = self._HEADER.match(line)
            if header:
                table = self._split(header.group(1))
                self._lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                path = table + self._split(key.group(1))
                for depth in range(len(table) + 1, len(path) + 1):
                    self._lines.setdefault(path[:depth], number)

    @staticmethod
    def _split(dotted: str) -> KeyPath:
        parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', dotted)
        return tuple(KeyLines._unescape(a) if a else b or c for a, b, c in parts)

    @staticmethod
    def _unescape(basic: str) -> str:
        """A double-quoted key as TOML reads it (escapes such as \\n decoded)."""
        try:
            return str(tomllib.loads(f'k = "{basic}"')["k"])
        except tomllib.TOMLDecodeError:
            return basic

    def line(self, *path: str) -> int:
        for depth in range(len(path), 0, -1):
            if path[:depth] in self._lines:
                return self._lines[path[:depth]]
        return 1


class _Inside:
    """Whether a line of TOML starts inside a multi-line string or an array
    (or inline table) left open by the lines before it, where a line that
    looks like `key = value` or `[table]` is neither."""

    def __init__(self) -> None:
        self.string: str | None = None  # the open ''' or """ delimiter
        self.depth = 0  # brackets and braces open outside strings

    def continues(self, line: str) -> bool:
        """True when `line` starts inside; reads it either way."""
        inside = self.string is not None or self.depth > 0
        i = 0
        while i < len(line):
            if self.string is not None:
                if line[i] == "\\" and self.string == '"""':
                    i += 2
                    continue
                if line.startswith(self.string, i):
                    i += 3
                    while i < len(line) and line[i] == self.string[0]:  # up to two quotes may end the content
                        i += 1
                    self.string = None
                    continue
                i += 1
                continue
            char = line[i]
            if char == "#":
                break
            if line.startswith('"""', i) or line.startswith("'''", i):
                self.string = line[i : i + 3]
                i += 3
                continue
            if char in "\"'":
                i = _string_end(line, i)
                continue
            if char in "[{":
                self.depth += 1
            elif char in "]}":
                self.depth = max(self.depth - 1, 0)
            i += 1
        return inside


def _string_end(line: str, start: int) -> int:
    """Past the one-line string that opens at `start`."""
    quote = line[start]
    i = start + 1
    while i < len(line):
        if line[i] == "\\" and quote == '"':
            i += 2
            continue
        if line[i] == quote:
            return i + 1
        i += 1
    return i


def nearest(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only for a misspelt key

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: Iterable[str]) -> str:
    """A key path as TOML writes it: bare keys plain, any other key quoted
    (so that a key holding a newline cannot split a one-line error)."""
    return ".".join(key if _BARE_KEY.fullmatch(key) else _quoted(key) for key in path)


def _quoted(key: str) -> str:
    import json  # (only for a key that is not bare: `check` need not load it at every start)

    return json.dumps(key, ensure_ascii=False)


def literal_values(annotation: object) -> tuple[str, ...]:
    """The values a `Literal[...]` allows, wherever it sits in an annotation
    (`Literal[...] | None`, `Mapping[str, Literal[...]]`)."""
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(arg) for arg in typing.get_args(annotation))
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found.extend(literal_values(arg))
    return tuple(found)


@functools.cache
def choices(model: type, field: str) -> tuple[str, ...]:
    """The values `model.field` may take, from its annotation (read once:
    resolving a model's annotations costs a millisecond, and a manifest of
    ten thousand processes asks for each of them ten thousand times)."""
    return literal_values(typing.get_type_hints(model)[field])


class Reader:
    """One manifest being read: its file, where each key is, and what the
    keys read so far say that later ones depend on."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.root = path.parent
        self.lines = KeyLines(text)
        self.defaults = Settings()
        """The [settings] in force: processes inherit its limits."""
        self.regions: dict[str, SharedRegion] = {}
        """The [shared] regions a process may list."""
        self.names: Mapping[str, None] = {}
        """Every process of the manifest (what `depends_on` may name), in order."""
        self.warnings: list[str] = []
        """What is allowed but probably not meant, one line each."""

    def warn(self, message: str, *path: str) -> None:
        self.warnings.append(str(ManifestError(message, path=self.path.name, line=self.lines.line(*path), key=dotted(path))))

    def error(self, message: str, *path: str, suggestion: str | None = None) -> ManifestError:
        return ManifestError(message, path=self.path.name, line=self.lines.line(*path), key=dotted(path), suggestion=suggestion)

    def check_keys(self, table: Mapping[str, Any], allowed: Iterable[str], *path: str) -> None:
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                raise self.error("unknown key", *path, key, suggestion=nearest(key, allowed))

    def keys(self, table: Mapping[str, Any], keys: Sequence[Key], *path: str) -> dict[str, Any]:
        """Every key of `table` read by its entry of `keys`: model field → value."""
        by_name = {key.name: key for key in keys}
        self.check_keys(table, by_name, *path)
        return {by_name[name].field: by_name[name].read(self, value, (*path, name)) for name, value in table.items()}

    # ------------------------------------------------------------ values

    def table(self, value: object, *path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"expected a table, got {values.describe(value)}", *path)
        return value

    def duration(self, value: object, path: KeyPath, *, positive: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None
        if positive and seconds <= 0:
            raise self.error("must be more than zero", *path)
        return seconds

    def integer(self, value: object, path: KeyPath, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
            bound = f"≥ {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise self.error(f"expected an integer {bound}, got {values.describe(value)}", *path)
        return value

    def boolean(self, value: object, path: KeyPath) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {values.describe(value)}", *path)
        return value

    def string(self, value: object, path: KeyPath) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected a non-empty string, got {values.describe(value)}", *path)
        return value

    def choice(self, value: object, path: KeyPath, allowed: Sequence[str]) -> str:
        if value not in allowed:
            wanted = f'"{allowed[0]}" or "{allowed[1]}"' if len(allowed) == 2 else f"one of {', '.join(allowed)}"
            raise self.error(f"expected {wanted}, got {values.describe(value)}", *path, suggestion=nearest(str(value), allowed))
        return str(value)

    def size(self, value: object, path: KeyPath) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None

    def memory_amount(self, value: object, path: KeyPath) -> int:
        """A size, or a share of the machine's RAM: "10%"."""
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                share = float(value.strip()[:-1])
            except ValueError:
                share = -1.0
            if not 0 <= share <= 100:
                raise self.error(f"expected a size or a percentage of RAM, got {values.describe(value)}", *path)
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * share / 100)
        return self.size(value, path)

    def signal(self, value: object, path: KeyPath) -> int:
        try:
            return values.signal_number(value)
        except ValueError as exc:
            raise self.error(str(exc), *path) from None

    def limits(self, value: object, path: KeyPath) -> Limits:
        table = self.table(value, *path)
        self.check_keys(table, values.LIMIT_KEYS, *path)
        parsed: dict[str, Any] = {}
        for key, item in table.items():
            try:
                parsed[key] = values.limit(key, item)
            except ValueError as exc:
                raise self.error(str(exc), *path, key) from None
        return Limits(**parsed)

    def env_table(self, value: object, path: KeyPath) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, item in self.table(value, *path).items():
            if not key or "=" in key:
                # execve takes NAME=value: such a name cannot reach a child.
                raise self.error("an environment variable's name cannot be empty or contain '='", *path, key)
            if isinstance(item, bool):
                env[key] = "true" if item else "false"
            elif isinstance(item, (str, int, float)):
                env[key] = str(item)
            else:
                raise self.error(f"expected a string, got {values.describe(item)}", *path, key)
        return env

    def env_file(self, value: object, path: KeyPath) -> Path:
        return self.root / self.string(value, path)

    def env_file_values(self, file: Path, path: KeyPath) -> dict[str, str]:
        return read_env_file(file, manifest=self.path, key=dotted(path), line=self.lines.line(*path))


Read = Callable[[Reader, Any, KeyPath], Any]


class Key(NamedTuple):
    """One key of a manifest table. (A named tuple: made at every start, a
    dataclass would cost 0.3 ms more.)"""

    name: str
    """As the manifest writes it."""
    read: Read
    """Its value → the model's (raising the reader's errors)."""
    to: str = ""
    """The model's field, when it is not named as the key."""

    @property
    def field(self) -> str:
        return self.to or self.name


def chosen(model: type, field: str) -> Read:
    """A key that takes one of the values the model's annotation allows."""
    allowed = choices(model, field)
    return lambda reader, value, path: reader.choice(value, path, allowed)


def bounded(minimum: int, maximum: int | None = None) -> Read:
    return lambda reader, value, path: reader.integer(value, path, minimum, maximum)


def positive_duration(reader: Reader, value: object, path: KeyPath) -> float:
    return reader.duration(value, path, positive=True)
