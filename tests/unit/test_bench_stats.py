"""Benchmark statistics on fixed samples, against figures worked out by hand."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procctl.bench import stats


def test_mean_and_sample_standard_deviation() -> None:
    values = [2, 4, 4, 4, 5, 5, 7, 9]
    assert stats.mean(values) == 5
    # Squared deviations 9+1+1+1+0+0+4+16 = 32; divisor n − 1 = 7.
    assert stats.stddev(values) == pytest.approx(math.sqrt(32 / 7))
    assert stats.stddev([3.0]) is None


def test_median_and_p95_interpolate_between_closest_ranks() -> None:
    values = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5]
    assert stats.median(values) == 5.5
    # h = (10 − 1) × 0.95 = 8.55 → x[8] + 0.55 × (x[9] − x[8]) = 9 + 0.55.
    assert stats.percentile(values, 0.95) == pytest.approx(9.55)
    assert stats.percentile(values, 0.0) == 1
    assert stats.percentile(values, 1.0) == 10
    assert stats.median([1, 2, 3]) == 2
    with pytest.raises(ValueError):
        stats.percentile([], 0.5)
    with pytest.raises(ValueError, match="whole percent"):
        stats.percentile(values, 0.955)
    assert stats.percentile([7.0], 0.95) == 7.0
    # statistics.quantiles gives 164.31971212222362 here, past the maximum,
    # and a hair below the closest ranks in the next one.
    assert stats.percentile([164.3197121222236] * 2, 0.95) == 164.3197121222236
    assert stats.percentile([1.0] + [656.0555018274923] * 3, 0.95) == 656.0555018274923


def test_figures_are_those_of_the_statistics_module() -> None:
    # Pinned: p95 is quantiles(method="inclusive"), not the default "exclusive"
    # (which would give 10.45 here, beyond the largest sample).
    values = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5]
    assert stats.percentile(values, 0.95) == statistics.quantiles(values, n=20, method="inclusive")[-1] == 9.55
    assert statistics.quantiles(values, n=20)[-1] == pytest.approx(10.45)
    assert stats.stddev(values) == statistics.stdev(values)
    assert stats.median(values) == statistics.median(values) == 5.5


_samples = st.lists(st.floats(min_value=1e-6, max_value=1e3, allow_nan=False), min_size=2, max_size=60)


@settings(max_examples=500, deadline=None)
@given(_samples)
def test_summary_agrees_with_statistics_on_any_series(values: list[float]) -> None:
    summary = stats.summarize(values)
    assert summary.mean == pytest.approx(statistics.mean(values), rel=1e-12)
    assert summary.stddev == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-12)
    assert summary.median == statistics.median(values)
    assert summary.p95 == pytest.approx(statistics.quantiles(values, n=100, method="inclusive")[94], rel=1e-12)
    assert summary.min <= summary.median <= summary.p95 <= summary.max


def test_summary_of_a_series_with_an_outlier() -> None:
    values = [4.0, 100.0, 1.0, 3.0, 2.0]
    summary = stats.summarize(values)
    assert summary.count == 5
    assert summary.mean == 22
    # Deviations −18, 78, −21, −19, −20: squares sum to 7610, over 4.
    assert summary.stddev == pytest.approx(math.sqrt(7610 / 4))
    assert (summary.min, summary.median, summary.max) == (1, 3, 100)
    # h = 4 × 0.95 = 3.8 → 4 + 0.8 × (100 − 4) = 80.8.
    assert summary.p95 == pytest.approx(80.8)
    # |x − 3| = 1, 97, 2, 0, 1 → MAD 1; M(100) = 0.6745 × 97 = 65.4 > 3.5;
    # M(1) = −1.349. The index is the sample's place as given.
    assert summary.outliers == (1,)
    assert stats.modified_z_scores(values)[1] == pytest.approx(0.6745 * 97)


def test_outliers_when_most_samples_are_equal() -> None:
    # MAD = 0: the mean absolute deviation (9/7) scaled by 1.253314 stands in.
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0]
    assert stats.modified_z_scores(values)[6] == pytest.approx(9 / (1.253314 * 9 / 7))
    assert stats.outliers(values) == (6,)
    assert stats.outliers([2.0] * 5) == ()
    # Nothing stands out in an even spread.
    assert stats.outliers([1.0, 2.0, 3.0, 4.0, 5.0]) == ()


def test_jitter_within_one_percent_of_the_median_is_no_outlier() -> None:
    # Runs of 101.6 to 102.2 ms: the mean deviation gives 102.2 a score near 4,
    # but half a millisecond on a tenth of a second is noise.
    values = [0.1017, 0.1016, 0.1022, 0.1017, 0.1017, 0.1016, 0.1017]
    assert max(abs(z) for z in stats.modified_z_scores(values)) > 3.5
    assert stats.outliers(values) == ()
    assert stats.outliers(values + [0.1300]) == (7,)


def test_relative_speed_with_propagated_uncertainty() -> None:
    slow, fast = (2.0, 0.1), (1.0, 0.05)
    relative = stats.relative_speeds([slow, fast])
    assert relative[1] == stats.Relative(1.0, None, True)
    assert relative[0].ratio == 2.0 and not relative[0].fastest
    # 2 × √((0.1/2)² + (0.05/1)²) = 2 × √0.005.
    assert relative[0].stddev == pytest.approx(2 * math.sqrt(0.005))
    # Without a standard deviation (one run) there is no uncertainty.
    assert stats.relative_speeds([(3.0, None), (1.5, 0.1)])[0] == stats.Relative(2.0, None, False)
    assert stats.relative_speeds([]) == []


def test_no_ratio_to_a_command_that_took_no_time() -> None:
    # A command within the shell's start-up noise measures 0 s once that is
    # subtracted: a ratio to it is no number, so none is given.
    assert stats.relative_speeds([(0.05, 0.001), (0.0, 0.0)]) is None
    assert stats.relative_speeds([(0.0, None)]) is None


def _zero_time_benchmark() -> object:
    from pathlib import Path

    from procctl.bench.result import BenchmarkResult, Command, Options, RunFigures, command_result
    from procctl.bench.runner import _relative_to_fastest

    def runs(wall: float) -> list[RunFigures]:
        return [RunFigures(i, 0.0, 0.0, wall, 0.0, 0.0, None, 0, None) for i in (1, 2, 3)]

    results = [
        command_result(Command(text, ("sh", "-c", text), Path("."), {}, True, text), runs(wall), (0.0, 1.0))
        for text, wall in (("sleep 0.05", 0.05), ("true", 0.0))
    ]
    return BenchmarkResult(tuple(_relative_to_fastest(results)), Options(runs=3), (0.001, 0.0, 0.0), 0.0)


def test_a_zero_time_command_is_reported_without_an_infinite_ratio() -> None:
    """1. 'true' measured 0 s after the shell's start-up was subtracted.
    2. No comparison line, no 'inf' in the table or the exports; a warning says why."""
    from procctl.bench import export
    from procctl.ui.bench import comparison_lines, relative_text, warning_lines

    result = _zero_time_benchmark()
    assert comparison_lines(result) == []  # type: ignore[arg-type]
    assert [relative_text(r) for r in result.results] == ["-", "-"]  # type: ignore[attr-defined]
    (warning,) = warning_lines(result)  # type: ignore[arg-type]
    assert "no relative speeds: 'true' took no measurable time" in warning
    for text in (export.to_json(result), export.to_markdown(result)):  # type: ignore[arg-type]
        assert "inf" not in text.lower().replace("info", "")
    assert export.to_markdown(result).splitlines()[3].endswith("| - |")  # type: ignore[arg-type]
