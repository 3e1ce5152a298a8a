"""Statistics over seeds: mean ± std, Welch's t-test with Holm's correction, a bootstrap CI of a
difference of means, the most confused class pairs of a confusion matrix, and linear
combinations of sample means with Welch-Satterthwaite intervals."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from src.report.groups import Group

ALPHA = 0.05
BOOTSTRAP = 10_000
TOP_PAIRS = 5


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN where undefined)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value for mean(a) != mean(b) (NaN when undefined)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) < 2 or len(b_arr) < 2:
        return math.nan, math.nan
    if a_arr.var(ddof=1) == 0 and b_arr.var(ddof=1) == 0:
        # No spread at all: equal means are no evidence, different means are "infinitely" clear.
        return (0.0, 1.0) if a_arr.mean() == b_arr.mean() else (math.copysign(math.inf, a_arr.mean() - b_arr.mean()),
                                                                  0.0)
    with warnings.catch_warnings():  # scipy warns on near-equal samples; the p-value it returns is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a_arr, b_arr, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def bootstrap_ci(a: Sequence[float], b: Sequence[float], reps: int = BOOTSTRAP, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a) - mean(b), resampling each group with replacement."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) < 2 or len(b_arr) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(a_arr, size=(reps, len(a_arr))).mean(axis=1)
             - rng.choice(b_arr, size=(reps, len(b_arr))).mean(axis=1))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    valid = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    group: Group
    baseline: Group | None
    diff: float = math.nan
    t: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        if math.isnan(self.p_holm):
            return "not testable"
        if self.p_holm < ALPHA:
            return "significantly better" if self.diff > 0 else "significantly worse"
        return "no significant difference"


def compare(group: Group, baseline: Group | None) -> Comparison:
    if baseline is None:
        return Comparison(group, None, note="no baseline runs with the same recipe")
    a, b = group.values("test_acc"), baseline.values("test_acc")
    comp = Comparison(group, baseline, diff=float(np.mean(a) - np.mean(b)) if a and b else math.nan)
    if len(a) < 2 or len(b) < 2:
        comp.note = f"n too small (n={len(a)} vs {len(b)}; need >= 2 each)"
        return comp
    comp.t, comp.p = welch(a, b)
    comp.ci = bootstrap_ci(a, b)
    return comp


def confused_pairs(matrix: np.ndarray, names: Sequence[str], top: int = TOP_PAIRS) -> list[dict[str, Any]]:
    """The ``top`` class pairs with the most off-diagonal counts, both directions combined."""
    counts = np.asarray(matrix, dtype=np.int64)
    errors = int(counts.sum() - np.trace(counts))
    pairs = []
    for i in range(len(counts)):
        for j in range(i + 1, len(counts)):
            both = int(counts[i, j] + counts[j, i])
            if both:
                pairs.append({"a": names[i] if i < len(names) else str(i), "b": names[j] if j < len(names) else str(j),
                              "count": both, "a_as_b": int(counts[i, j]), "b_as_a": int(counts[j, i]),
                              "share_of_errors": both / errors if errors else math.nan})
    pairs.sort(key=lambda p: (-p["count"], p["a"], p["b"]))
    return pairs[:top]



# ------------------------------------------------------------------------------------------
# Linear combinations of sample means (the gap table)
# ------------------------------------------------------------------------------------------


def t_quantile(df: float, level: float = 1 - ALPHA) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom (NaN for df <= 0)."""
    return float(stats.t.ppf(0.5 + level / 2, df)) if df > 0 else math.nan


@dataclass
class Estimate:
    """A linear combination of sample means, with a Welch-Satterthwaite 95% interval."""

    value: float
    low: float = math.nan
    high: float = math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high


def combine(terms: Sequence[tuple[float, float | Sequence[float]]]) -> Estimate:
    """sum_i c_i mean(x_i) for terms (c_i, x_i); a float x_i is a constant without error. The
    interval needs >= 2 values in every sampled term (NaN otherwise)."""
    value, var, df_den, sampled = 0.0, 0.0, 0.0, False
    for coef, sample in terms:
        if isinstance(sample, (int, float)):
            value += coef * float(sample)
            continue
        sampled = True
        arr = np.asarray(sample, dtype=float)
        if arr.size == 0:
            return Estimate(math.nan)
        value += coef * float(arr.mean())
        if arr.size < 2:
            var = math.nan
            continue
        v = coef * coef * float(arr.var(ddof=1)) / arr.size
        var += v
        df_den += v * v / (arr.size - 1)
    if math.isnan(var) or not sampled:  # constants only (the reported figures): no interval
        return Estimate(value)
    if var == 0.0:
        return Estimate(value, value, value)
    half = t_quantile(var * var / df_den) * math.sqrt(var)
    return Estimate(value, value - half, value + half)


def prediction_interval(sample: Sequence[float]) -> tuple[float, float]:
    """95% interval for one more run: mean ± t * std * sqrt(1 + 1/n)."""
    arr = np.asarray(sample, dtype=float)
    if arr.size < 2:
        return math.nan, math.nan
    half = t_quantile(arr.size - 1) * float(arr.std(ddof=1)) * math.sqrt(1 + 1 / arr.size)
    return float(arr.mean()) - half, float(arr.mean()) + half
