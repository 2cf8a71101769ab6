"""Statistics of a benchmark's samples. Pure: numbers in, numbers out.

- mean, the *sample* standard deviation (divisor n − 1, as hyperfine and
  every statistics package report it; None for a single sample), the median
  and p95 come from the standard library's `statistics`. Quantiles are its
  "inclusive" method: linear interpolation between the closest ranks (what
  numpy and R call "linear", type 7), so p95 of n sorted values x is
  x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]) with h = 0.95·(n − 1).
- outliers by the modified Z-score of Iglewicz and Hoaglin:
  M = 0.6745 · (x − median) / MAD, where MAD is the median absolute deviation;
  a sample with |M| > 3.5 is an outlier. When more than half the samples are
  equal (MAD = 0), the mean absolute deviation scaled by 1.253314 stands in
  for MAD (so that M keeps the scale of a standard score); when every sample
  is equal there are no outliers. A sample within 1 % of the median is never
  an outlier, whatever its score: with runs that agree to a tenth of a
  millisecond, MAD is so small that scheduler jitter alone would score high.
- relative speed of each command to the fastest (lowest mean), with the
  uncertainty propagated from both standard deviations as hyperfine does:
  r = m / m₀ and σᵣ = r · √((σ/m)² + (σ₀/m₀)²). When the fastest mean is
  zero (a command that took no measurable time once the shell's start-up was
  subtracted) there is no ratio to give: the comparison is left out, as
  hyperfine leaves it out, rather than called infinite.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

OUTLIER_THRESHOLD = 3.5
"""|modified Z-score| above which a sample is an outlier (Iglewicz and Hoaglin)."""
OUTLIER_MIN_DEVIATION = 0.01
"""Fraction of the median a sample must differ by to count as an outlier."""

_MAD_SCALE = 0.6745
"""The 0.75 quantile of the standard normal: makes MAD estimate σ for normal data."""
_MEAN_AD_SCALE = 1.253314
"""√(π/2): the ratio of σ to the mean absolute deviation for normal data."""


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """The figures of one series of samples, in the samples' own unit."""

    count: int
    mean: float
    stddev: float | None
    """Sample standard deviation (n − 1); None with fewer than two samples."""
    min: float
    median: float
    p95: float
    """95th percentile, linear interpolation between closest ranks."""
    max: float
    outliers: tuple[int, ...]
    """Indices (into the samples as given) of the statistical outliers."""


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return statistics.fmean(values)


def stddev(values: Sequence[float]) -> float | None:
    """Sample standard deviation (divisor n − 1); None for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile for a whole percent q (0, 0.01, …, 0.95, 1): the
    "inclusive" method of `statistics.quantiles`."""
    if not values:
        raise ValueError("percentile of no values")
    percent = round(q * 100)
    if not 0 <= percent <= 100 or abs(percent - q * 100) > 1e-9:
        raise ValueError(f"quantile must be a whole percent within [0, 1], got {q}")
    if percent == 0:
        return min(values)
    if percent == 100 or len(values) == 1:
        return max(values)
    # quantiles() weighs the two closest ranks in floating point, which can
    # land one ulp outside them (p95 of [x, x] > x): keep it between them.
    cut = statistics.quantiles(values, n=100, method="inclusive")[percent - 1]
    ordered = sorted(values)
    rank = (len(ordered) - 1) * percent / 100
    return min(max(cut, ordered[math.floor(rank)]), ordered[math.ceil(rank)])


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def modified_z_scores(values: Sequence[float]) -> list[float]:
    """M = 0.6745 (x − median) / MAD for each value (see the module docstring
    for MAD = 0); all zeros when every value is the same."""
    if not values:
        return []
    center = median(values)
    deviations = [abs(v - center) for v in values]
    mad = median(deviations)
    if mad > 0:
        return [_MAD_SCALE * (v - center) / mad for v in values]
    mean_ad = mean(deviations)
    if mean_ad > 0:
        return [(v - center) / (_MEAN_AD_SCALE * mean_ad) for v in values]
    return [0.0 for _ in values]


def outliers(values: Sequence[float], threshold: float = OUTLIER_THRESHOLD) -> tuple[int, ...]:
    """Indices of the values whose |modified Z-score| exceeds `threshold` and
    that differ from the median by more than OUTLIER_MIN_DEVIATION of it."""
    if not values:
        return ()
    floor = OUTLIER_MIN_DEVIATION * abs(median(values))
    center = median(values)
    return tuple(
        i
        for i, score in enumerate(modified_z_scores(values))
        if abs(score) > threshold and abs(values[i] - center) > floor
    )


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no samples to summarize")
    return Summary(
        count=len(values),
        mean=mean(values),
        stddev=stddev(values),
        min=min(values),
        median=median(values),
        p95=percentile(values, 0.95),
        max=max(values),
        outliers=outliers(values),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Relative:
    """How many times slower than the fastest one a series is."""

    ratio: float
    """mean / mean of the fastest; 1.0 for the fastest itself."""
    stddev: float | None
    """Propagated uncertainty of `ratio`; None for the fastest itself, or
    when a standard deviation is unknown."""
    fastest: bool


def relative_speeds(series: Sequence[tuple[float, float | None]]) -> list[Relative] | None:
    """(mean, stddev) of each series → its speed relative to the fastest;
    None when the fastest mean is zero (or below), where no ratio means anything."""
    if not series:
        return []
    best = min(range(len(series)), key=lambda i: series[i][0])
    best_mean, best_sd = series[best]
    if best_mean <= 0:
        return None
    out = []
    for i, (m, sd) in enumerate(series):
        if i == best:
            out.append(Relative(1.0, None, True))
            continue
        ratio = m / best_mean
        if sd is None or best_sd is None or m <= 0:
            out.append(Relative(ratio, None, False))
            continue
        out.append(Relative(ratio, ratio * math.sqrt((sd / m) ** 2 + (best_sd / best_mean) ** 2), False))
    return out
