from __future__ import annotations

import pytest

from procctl.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("1.5s", 1.5), (3, 3.0), ("7", 7.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "ten", "10x", "-1s", "1s2", True, [1], -3, "s"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512KiB", 512 * 1024), ("256MiB", 256 * 1024**2), ("1GiB", 1024**3), ("100MB", 100 * 1000**2), (4096, 4096), ("1.5KiB", 1536)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "12XB", -1, "1.2.3MiB", 1.5, False])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_formatting() -> None:
    assert format_duration(0.25) == "250ms"
    assert format_duration(12.34) == "12.3s"
    assert format_duration(245) == "4m05s"
    assert format_duration(7380) == "2h03m"
    assert format_duration(None) == "-"
    assert format_size(512) == "512B"
    assert format_size(1536) == "1.5KiB"
    assert format_size(256 * 1024**2) == "256.0MiB"
