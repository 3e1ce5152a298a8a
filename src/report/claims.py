"""The reference study's reported numbers and known confusions (docs/study.md), each checked
against ours with a computed verdict."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

from src.report.format import pct, pvalue
from src.report.groups import BASELINE_LOSS, Group
from src.report.stats import ALPHA, TOP_PAIRS, Comparison, confused_pairs, mean_std

# Brief section 2: max test accuracy over 50 epochs (Keras, Adadelta lr=1, batch 128), one run
# each; the SphereFace m=2 figure came from a protocol that leaked the test labels.
REFERENCE: dict[tuple[str, float | None], float] = {
    ("softmax", None): 94.15,
    ("sphereface", 2.0): 95.32,
    ("sphereface", 4.0): 93.52,
    ("sphereface", 6.0): 94.87,
    ("arcface", 0.5): 94.28,
    ("arcface", 2.0): 93.76,
    ("arcface", 4.0): 94.03,
}
KNOWN_PAIRS = (("T-shirt/top", "Shirt"), ("Pullover", "Coat"), ("Pullover", "Shirt"), ("Coat", "Shirt"),
               ("Sneaker", "Ankle boot"))


def reference_rows(groups: Sequence[Group], comparisons: dict[int, Comparison]) -> list[list[str]]:
    rows = []
    ref_base = REFERENCE[(BASELINE_LOSS, None)]
    for (loss, m), reported in REFERENCE.items():
        name = "CNN + Softmax (baseline)" if loss == BASELINE_LOSS else f"{loss} m={m:g}"
        matches = [g for g in groups if g.loss == loss and (g.m == m or (m is not None and g.m is not None
                                                                             and math.isclose(g.m, m)))]
        if loss == BASELINE_LOSS:
            claim = f"baseline reaches {reported:.2f}%"
        else:
            delta = reported - ref_base
            claim = f"{'beats' if delta > 0 else 'is below'} baseline ({delta:+.2f} pp)"
        if not matches:
            rows.append([name, f"{reported:.2f}", "no runs", "–", claim, "not tested"])
            continue
        for group in matches:
            acc = group.values("test_acc")
            mean, std = mean_std(acc)
            leaky = pct(*mean_std(group.values("test_acc_leaky")))
            ours = f"{pct(mean, std)} (n={len(acc)})"
            label = f"{name} [{group.extra}]" if group.extra else name
            if loss == BASELINE_LOSS:
                verdict = _baseline_verdict(acc, reported)
            else:
                verdict = _claim_verdict(comparisons.get(id(group)), reported - ref_base)
            rows.append([label, f"{reported:.2f}", ours, leaky, claim, verdict])
    return rows


def _baseline_verdict(acc: Sequence[float], reported: float) -> str:
    if len(acc) < 2:
        return "n too small"
    mean, std = mean_std(acc)
    half = float(stats.t.ppf(1 - ALPHA / 2, len(acc) - 1)) * std / math.sqrt(len(acc))
    low, high = 100 * (mean - half), 100 * (mean + half)
    inside = low <= reported <= high
    return (f"holds: {reported:.2f} is inside our 95% CI [{low:.2f}, {high:.2f}]" if inside
            else f"does not hold: our 95% CI is [{low:.2f}, {high:.2f}]")


def _claim_verdict(comp: Comparison | None, reported_delta: float) -> str:
    if comp is None:
        return "not tested"
    if comp.note:
        return comp.note
    verdict = comp.verdict
    want = "significantly better" if reported_delta > 0 else "significantly worse"
    if verdict == want:
        return f"holds ({verdict}, Holm p={pvalue(comp.p_holm)})"
    if verdict == "no significant difference":
        return f"not supported (no significant difference, Holm p={pvalue(comp.p_holm)})"
    if verdict.startswith("significantly"):
        return f"contradicted ({verdict}, Holm p={pvalue(comp.p_holm)})"
    return verdict


def confusion_claims(groups: Sequence[Group]) -> list[str]:
    """Brief section 2's known confusions, checked on each baseline group's summed matrix."""
    lines = []
    for group in groups:
        if group.loss != BASELINE_LOSS:
            continue
        matrix, names, _ = group.confusion()
        if matrix is None or not {"T-shirt/top", "Shirt"} <= set(names):
            continue
        top = confused_pairs(matrix, names, top=TOP_PAIRS)
        if not top:
            continue
        pairs = [{p["a"], p["b"]} for p in top]
        worst = {"T-shirt/top", "Shirt"} == pairs[0]
        known = [f"{a} <-> {b}" for a, b in KNOWN_PAIRS if {a, b} in pairs]
        lines.append(
            f"- {group.label}: \"T-shirt/top <-> Shirt is the worst pair\" "
            f"{'holds' if worst else 'does not hold (worst: ' + top[0]['a'] + ' <-> ' + top[0]['b'] + ')'}; "
            f"{len(known)} of the 5 known pairs are in our top {TOP_PAIRS}"
            + (f" ({', '.join(known)})" if known else "") + "."
        )
    return lines
