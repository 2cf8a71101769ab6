"""The values a manifest and a live request share: a signal, and each kind
of resource limit. One function parses each, for the manifest's loader and
for `procctl kill --signal` and `procctl limits` alike; it raises ValueError
with a message fit for the user, and the caller says where the value came
from (a manifest's file:line:key, a request's verb).
"""

from __future__ import annotations

import math
import os
import signal

from procctl.config import rlimits
from procctl.config.manifest import MAX_RLIMIT, Limits
from procctl.units import parse_duration, parse_size

LIMIT_KEYS = Limits._fields
"""Every limit a manifest can set."""
LIVE_LIMITS = ("memory", "cpu_time", "nofile", "nproc", "cpu_percent")
"""The limits `procctl limits` changes on a running tree."""

_SIZES = ("memory", "address_space", "fsize", "core")
_RLIMITS = ("address_space", "cpu_time", "nofile", "nproc", "fsize", "core")
"""The kernel's own limits: one value (soft = hard) or [soft, hard]."""


def describe(value: object) -> str:
    """A value as an error message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def signal_number(value: object) -> int:
    """'TERM', 'SIGTERM', 'hup', 15 or '15' → the signal number."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(signal.Signals(value))
        if isinstance(value, str):
            name = value.strip().upper()
            if name.isdigit():
                return int(signal.Signals(int(name)))
            return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except (KeyError, ValueError):
        pass
    raise ValueError(f"not a signal: {describe(value)} (e.g. TERM, HUP, INT, 9)")


def limit(key: str, value: object) -> int | float | tuple[int, int]:
    """The value of limit `key` as `Limits` holds it: bytes for `memory`, a
    share of one core for `cpu_percent`, (soft, hard) for the kernel's
    rlimits, each within what the kernel takes."""
    if key not in LIMIT_KEYS:
        raise ValueError(f"unknown limit {key!r}; known: {', '.join(LIMIT_KEYS)}")
    if key == "memory":
        return _within(parse_size(value), 1, MAX_RLIMIT, "bytes")
    if key == "cpu_percent":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a percentage of one core, got {describe(value)}")
        return float(_within(value, 0, 100 * (os.cpu_count() or 1), "%", above=True))
    pair = value if isinstance(value, list) else [value, value]
    if len(pair) != 2:
        raise ValueError(f"expected a value or [soft, hard], got {describe(value)}")
    soft, hard = (_rlimit(key, item) for item in pair)
    if soft > hard:
        raise ValueError(f"the soft limit ({pair[0]}) is above the hard limit ({pair[1]})")
    refusal = rlimits.over_ceiling(key, (soft, hard))
    if refusal is not None:
        raise ValueError(f"{refusal}: no process could be started with it")
    return soft, hard


def _rlimit(key: str, value: object) -> int:
    if key == "cpu_time":
        seconds = parse_duration(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"expected a duration of more than zero, got {describe(value)}")
        return _within(max(int(seconds), 1), 1, MAX_RLIMIT, "seconds")
    if key in _SIZES:
        return _within(parse_size(value), 0, MAX_RLIMIT, "bytes")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {describe(value)}")
    return _within(value, 0, MAX_RLIMIT, "")


def _within(value: int | float, low: int, high: int, unit: str, *, above: bool = False) -> int:
    if (value <= low if above else value < low) or value > high:
        lowest = f"more than {low:,}" if above else f"{low:,}"
        raise ValueError(f"must be {lowest} to {high:,}{' ' + unit if unit else ''}, got {value:,}")
    return value  # type: ignore[return-value]
