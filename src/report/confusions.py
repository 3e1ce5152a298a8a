"""Do the margin losses fix softmax's confusions? Per class pair, the test errors of each run (both
directions), each margin configuration against the softmax baseline of the same recipe.

The pairs are the baseline's most confused ones plus the reference study's known pairs. Each (configuration,
pair) is one Welch test on per-run error counts, Holm-adjusted over every test in the table, so a
"fixed" pair survives the many comparisons the table makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from src.report.claims import KNOWN_PAIRS
from src.report.format import num, pvalue
from src.report.groups import BASELINE_LOSS, Group, baseline_for
from src.report.stats import ALPHA, TOP_PAIRS, confused_pairs, holm, mean_std, welch


def pair_errors(matrices: Sequence[np.ndarray], names: Sequence[str], a: str, b: str) -> list[float] | None:
    """Per run: test images of class a predicted as b plus those of b predicted as a (None if a class is missing)."""
    if a not in names or b not in names:
        return None
    i, j = list(names).index(a), list(names).index(b)
    return [float(m[i, j] + m[j, i]) for m in matrices]


@dataclass
class PairTest:
    group: Group
    pair: tuple[str, str]
    errors: list[float]
    baseline: list[float]
    p: float = math.nan
    p_holm: float = math.nan

    @property
    def change(self) -> float:
        """Relative change of the mean error count against the baseline's."""
        base = float(np.mean(self.baseline))
        return (float(np.mean(self.errors)) - base) / base if base else math.nan

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_holm):
            return f"n too small (n={len(self.errors)} vs {len(self.baseline)})"
        if self.p_holm < ALPHA:
            return "fewer errors" if self.change < 0 else "more errors"
        return "no significant change"


@dataclass
class ConfusionComparison:
    pairs: list[tuple[str, str]]
    tests: list[PairTest] = field(default_factory=list)


def compare_confusions(groups: Sequence[Group]) -> ConfusionComparison | None:
    """The table's data: which pairs, and every (group, pair) test."""
    baselines = [g for g in groups if g.loss == BASELINE_LOSS]
    pairs: list[tuple[str, str]] = []
    for base in baselines:
        total, names, _ = base.confusion()
        if total is not None:
            pairs += [(p["a"], p["b"]) for p in confused_pairs(total, names, TOP_PAIRS)]
    if not pairs:
        return None
    pairs += [p for p in KNOWN_PAIRS if p not in pairs and p[::-1] not in pairs]
    pairs = list(dict.fromkeys(pairs))
    out = ConfusionComparison(pairs)
    base_matrices: dict[int, tuple[Any, ...]] = {id(b): b.matrices() for b in baselines}
    for group in groups:
        base = baseline_for(group, groups)
        if group.loss == BASELINE_LOSS or base is None:
            continue
        mats, names, _ = group.matrices()
        base_mats, base_names, _ = base_matrices[id(base)]
        for pair in pairs:
            errors, reference = pair_errors(mats, names, *pair), pair_errors(base_mats, base_names, *pair)
            if not errors or not reference:
                continue
            test = PairTest(group, pair, errors, reference)
            _, test.p = welch(errors, reference)
            out.tests.append(test)
    for test, adjusted in zip(out.tests, holm([t.p for t in out.tests]), strict=True):
        test.p_holm = adjusted
    return out


def confusion_change_section(groups: Sequence[Group], table: Callable[..., str]) -> list[str]:
    """Markdown: one row per (configuration, pair) and a one-line answer per configuration."""
    result = compare_confusions(groups)
    if result is None or not result.tests:
        return []
    md = ["## Do the margin losses fix softmax's confusions?", "",
          "Test errors between two classes, both directions, per run; mean ± sample std over seeds. Pairs: the "
          f"baseline's top {TOP_PAIRS} plus the reference study's known pairs. Each margin configuration is compared "
          "with the "
          "softmax runs of the same recipe by Welch's t-test on the per-run counts, Holm-adjusted over all "
          f"{len(result.tests)} tests in this table; a pair counts as fixed only if its errors drop significantly "
          f"(adjusted p < {ALPHA}).", ""]
    rows = []
    for test in result.tests:
        mean, std = mean_std(test.errors)
        base_mean, base_std = mean_std(test.baseline)
        rows.append([test.group.label, f"{test.pair[0]} <-> {test.pair[1]}", num(base_mean, base_std),
                     num(mean, std), f"{100 * test.change:+.1f}%", pvalue(test.p), pvalue(test.p_holm),
                     test.verdict])
    md.append(table(["configuration", "pair", "softmax errors", "errors", "change", "p", "p (Holm)", "verdict"],
                    rows))
    md.append("")
    for group in {id(t.group): t.group for t in result.tests}.values():
        own = [t for t in result.tests if t.group is group]
        fixed = [f"{t.pair[0]} <-> {t.pair[1]} ({100 * t.change:+.0f}%)" for t in own if t.verdict == "fewer errors"]
        worse = [f"{t.pair[0]} <-> {t.pair[1]} ({100 * t.change:+.0f}%)" for t in own if t.verdict == "more errors"]
        line = f"- **{group.label}**: " + (f"fewer errors on {', '.join(fixed)}" if fixed else
                                           "no pair significantly better than softmax")
        md.append(line + (f"; more errors on {', '.join(worse)}" if worse else "") + ".")
    md.append("")
    return md
