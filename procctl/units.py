"""Durations and sizes as the manifest writes them, and back for display. Pure."""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> float:
    """'500ms', '10s', '2m', '1h', '1h30m' or a bare number of seconds → seconds.

    Raises ValueError with a message fit for the user.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '10s', got {value!r}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"expected a finite duration like '10s', got {value!r}")
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '10s', got {value!r}")
    text = value.strip().lower()
    parts = re.findall(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h|d)?", text)
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != text.replace(" ", ""):
        raise ValueError(f"not a duration: {value!r} (write e.g. '500ms', '10s', '2m', '1h')")
    if len(parts) > 1 and any(not u for _, u in parts):
        raise ValueError(f"not a duration: {value!r} (every part needs a unit)")
    seconds = sum(float(n) * _DURATION_UNITS[u or "s"] for n, u in parts)
    if not math.isfinite(seconds):
        raise ValueError("expected a duration like '10s', got one too long to count")
    return seconds


def parse_size(value: object) -> int:
    """'512KiB', '256MiB', '1GiB', '100MB' or a bare number of bytes → bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '256MiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size like '256MiB', got {value!r}")
    match = _NUMBER_UNIT.match(value)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (write e.g. '512KiB', '256MiB', '1GiB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def format_duration(seconds: float | None) -> str:
    """Seconds → '850ms', '12.3s', '4m05s', '2h03m'."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_size(n_bytes: float | None) -> str:
    """Bytes → '512B', '1.5KiB', '256.0MiB'."""
    if n_bytes is None:
        return "-"
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
