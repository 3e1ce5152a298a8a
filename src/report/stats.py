"""Statistics over seeds: mean ± std, Welch's t-test with Holm's correction, a bootstrap CI of a
difference of means, and the most confused class pairs of a confusion matrix."""

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
# Groups
