"""Sparklines: a short history of numbers as block characters. Pure."""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """The last `width` values as bars scaled to `top` (default: their maximum),
    right-aligned in `width` columns. An empty history is blank."""
    if width <= 0:
        return ""
    recent = list(values)[-width:]
    if not recent:
        return " " * width
    scale = max(recent) if top is None else max(top, max(recent))
    last = len(BARS) - 1
    if scale <= 0:
        bars = BARS[0] * len(recent)
    else:
        bars = "".join(BARS[min(max(int(value / scale * last + 0.5), 0), last)] for value in recent)
    return bars.rjust(width)
