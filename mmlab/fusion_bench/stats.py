"""Statistics over seeds: mean, sample standard deviation, Student-t confidence intervals, paired differences.

With n seeds, the 95% interval of the mean is mean +/- t_{0.975, n-1} * s / sqrt(n) (s: the sample standard
deviation, ddof = 1). A paired difference pairs runs by seed (same seed: same initialisation seed and batch
order) and applies the same interval to the per-seed differences, so it is the interval of the paired t-test
(scipy.stats.ttest_rel(a, b).confidence_interval()). The quantile comes from scipy.stats.t.
"""
from __future__ import annotations

import math
from typing import Sequence

from mmlab import validation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0.0 for one value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t confidence interval of the mean at `level`; (mean, nan, nan) for one
    value (no interval from a single run)."""
    from scipy.stats import t

    validation.finite_float("level", level, 0, 1, low_open=True, high_open=True)
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = float(t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float | bool]:
    """a - b paired by position (seed): mean, std, the t-interval at `level`, and whether it excludes 0."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    mean, low, high = t_interval(diffs, level)
    return {"mean": mean, "std": mean_std(diffs)[1], "low": low, "high": high, "n": len(diffs),
            "excludes_zero": bool(low > 0 or high < 0)}
