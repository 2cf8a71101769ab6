""".env files: KEY=value lines, as foreman, honcho and docker compose read them."""

from __future__ import annotations

import re
from pathlib import Path

from procctl.errors import ManifestError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _double_quoted(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def parse_env(text: str, path: Path) -> dict[str, str]:
    """Parse .env text. Raises ManifestError naming the file and line."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(raw)
        if not match:
            raise ManifestError("expected KEY=value", path=path, line=number)
        key, value = match.group(1), match.group(2)
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.rfind(quote)
            if end == 0:
                raise ManifestError(f"{key}: unterminated {quote}-quoted value", path=path, line=number)
            rest = value[end + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise ManifestError(f"{key}: unexpected text after the quoted value", path=path, line=number)
            body = value[1:end]
            value = _double_quoted(body) if quote == '"' else body
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        values[key] = value
    return values


def read_env_file(path: Path, *, manifest: Path, key: str, line: int | None) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no such env file: {path}", path=manifest, line=line, key=key) from None
    except UnicodeDecodeError:
        raise ManifestError("not valid UTF-8", path=path) from None
    except OSError as exc:
        raise ManifestError(f"cannot read env file {path}: {exc.strerror or exc}", path=manifest, line=line, key=key) from None
    return parse_env(text, path)
