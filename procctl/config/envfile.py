""".env files: KEY=value lines, as python-dotenv reads them (and honcho and
foreman, which do not interpolate either)."""

from __future__ import annotations

import io
from pathlib import Path

from procctl.config.source import NotASource, read_source
from procctl.errors import ManifestError


def _unterminated(line: str) -> str:
    """The quote a broken line leaves open after its '=', if it does."""
    value = line.partition("=")[2].lstrip()
    return value[0] if value[:1] in ("'", '"') else ""


def parse_env(text: str, path: Path) -> dict[str, str]:
    """Parse .env text as python-dotenv reads it, without interpolation (as
    honcho and foreman): `export KEY=value`, a comment after a value
    (quoted or not, after whitespace), `#` and the other quote inside quotes,
    escapes in double quotes, values over several lines inside quotes. A
    KEY with no `=` sets nothing, as there. Raises ManifestError naming the
    file and line of the first line it cannot read."""
    # python-dotenv is read for .env files only, and only when there is one.
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\0" in raw:
            raise ManifestError("a NUL byte in the line: no environment variable can hold one", path=path, line=number)
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # A binding's text starts with the blank lines before it.
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count("\n")
        if binding.error:
            quote = _unterminated(original.strip())
            why = f"unterminated {quote}-quoted value" if quote else "expected KEY=value"
            raise ManifestError(why, path=path, line=line)
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def read_env_file(path: Path, *, manifest: Path, key: str, line: int | None) -> dict[str, str]:
    try:
        text = read_source(path).decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no such env file: {path}", path=manifest, line=line, key=key) from None
    except UnicodeDecodeError:
        raise ManifestError("not valid UTF-8", path=path) from None
    except OSError as exc:
        raise ManifestError(f"cannot read env file {path}: {exc.strerror or exc}", path=manifest, line=line, key=key) from None
    except NotASource as exc:
        raise ManifestError(f"cannot read env file {path}: {exc}", path=manifest, line=line, key=key) from None
    return parse_env(text, path)
