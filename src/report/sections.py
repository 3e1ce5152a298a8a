"""The markdown sections of ``report.md`` after the summary table, each from computed groups,
comparisons or summary rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.report.claims import confusion_claims, reference_rows
from src.report.format import num, pct, pvalue, table
from src.report.groups import Group
from src.report.recipe import has_reference_recipe, seed_counts, why_not_reference
from src.report.runs import Run
from src.report.stats import ALPHA, BOOTSTRAP, Comparison, confused_pairs
from src.report.summary import OPEN_SET_KEYS, RETRIEVAL_HEADERS, RETRIEVAL_KEYS


def significance_section(comparisons: dict[int, Comparison], groups: Sequence[Group] = ()) -> list[str]:
    if not comparisons:
        return []
    rows = []
    for comp in comparisons.values():
        base = comp.baseline
        low, high = comp.ci
        rows.append([
            comp.group.label, base.label if base else "–", f"{len(comp.group.runs)} vs {len(base.runs) if base else 0}",
            "–" if math.isnan(comp.diff) else f"{100 * comp.diff:+.2f}",
            "–" if math.isnan(low) else f"[{100 * low:+.2f}, {100 * high:+.2f}]",
            "–" if math.isnan(comp.t) else f"{comp.t:.2f}", pvalue(comp.p), pvalue(comp.p_holm), comp.verdict,
        ])
    family = sum(not math.isnan(comp.p_holm) for comp in comparisons.values())  # Holm's family, as build.py ran it
    return ["## Margin losses against the baseline", "",
            f"Welch's t-test on test accuracy (two-sided; p adjusted with Holm over the {family} tested comparisons), "
            f"and a {BOOTSTRAP}-sample percentile bootstrap 95% CI of the difference in mean accuracy "
            f"(pp = percentage points). Significant means Holm-adjusted p < {ALPHA}. "
            + power_note(comparisons, groups), "",
            table(["configuration", "baseline", "n", "difference (pp)", "bootstrap 95% CI (pp)", "t", "p", "p (Holm)",
                   "verdict"], rows), ""]


def power_note(comparisons: dict[int, Comparison], groups: Sequence[Group]) -> str:
    """What the tests can say, from the seed counts actually used."""
    if all(c.note for c in comparisons.values()):
        return "No test was possible: each side of a comparison needs at least 2 seeds."
    counts = seed_counts(groups or [c.group for c in comparisons.values()])
    return (f"With {counts} seed(s) per configuration the test has little power: \"no significant difference\" "
            "is not \"equal\".")


def reference_section(groups: Sequence[Group], comparisons: dict[int, Comparison]) -> list[str]:
    comparable = [g for g in groups if has_reference_recipe(g)]
    left_out = [f"{g.label}: {why_not_reference(g)}" for g in groups if not has_reference_recipe(g)]
    claims = confusion_claims(groups)
    known = (["Known confusions (the reference study's: T-shirt/top <-> Shirt worst, then Pullover <-> Coat, "
              "Pullover <-> Shirt, Coat <-> Shirt, Sneaker <-> Ankle boot):", "", *claims, ""] if claims else [])
    if not comparable:
        return ["## The reference study's claims", "",
                "Not compared with the reference study's reported figures: none of these configurations was trained "
                "with its recipe (the seed CNN on all Fashion-MNIST training images less the validation split, 50 "
                "epochs; docs/study.md). " + "; ".join(left_out) + ".", "", *known]
    md = ["## The reference study's claims", "",
          "Reference: the reference study's own figures (docs/study.md; Keras, max *test* accuracy over 50 epochs, "
          "one run each; SphereFace m=2 "
          "came from a protocol that fed the true test labels to the margin layer). Ours: best-validation "
          "checkpoint, test set once, mean ± std over seeds. A margin claim holds only if our difference to our "
          "baseline is significant in the same direction; the baseline claim holds if the reported value lies in "
          "the 95% t-interval of our mean.", "",
          table(["run", "reported (%)", "ours, honest (%)", "ours, leaky protocol (%)", "reference claim", "verdict"],
                reference_rows(comparable, comparisons)), ""]
    if left_out:
        md += ["Left out of this comparison (not the reference's recipe): " + "; ".join(left_out) + ".", ""]
    return md + known


def geometry_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [[s["configuration"], num(s["geometry_max_intra_deg_mean"], s["geometry_max_intra_deg_std"]),
             num(s["geometry_min_inter_deg_mean"], s["geometry_min_inter_deg_std"]),
             num(s["geometry_mean_to_center_deg_mean"], s["geometry_mean_to_center_deg_std"]),
             s["geometry_criterion_holds"]]
            for s in summaries if s["geometry_criterion_holds"]]
    if not rows:
        return []
    return ["## Embedding geometry (test set)", "",
            "Angles in degrees between L2-normalised test embeddings (src/analysis/geometry.py): max intra = the "
            "largest angle between two embeddings of one class (the largest over classes); min inter = the smallest "
            "angle between two class centers (mean directions); mean to center = the mean angle of an embedding to "
            "its class center. SphereFace's criterion: max intra < min inter (runs where it holds / runs).", "",
            table(["configuration", "max intra (°)", "min inter (°)", "mean to center (°)", "criterion holds"], rows),
            ""]


def open_set_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [[s["configuration"]] + [pct(s[f"open_set_{k}_mean"], s[f"open_set_{k}_std"]) for k in OPEN_SET_KEYS]
            for s in summaries if not math.isnan(s["open_set_roc_auc_mean"])]
    if not rows:
        return []
    return ["## Open-set verification (held-out classes)", "",
            "The held-out classes' test images, never seen in training, compared pairwise by cosine similarity "
            "(src/analysis/open_set.py); all values in %.", "",
            table(["configuration", "ROC AUC", "TAR @ FAR 1e-2", "TAR @ FAR 1e-3", "Recall@1"], rows), ""]


def retrieval_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    md: list[str] = []
    for prefix, title, what in (
        ("retrieval", "Embedding retrieval and clustering (test set)", "the test images of the trained classes"),
        ("open_set_retrieval", "Embedding retrieval and clustering (held-out classes)",
         "the held-out classes' test images, never seen in training"),
    ):
        rows = [[s["configuration"]] + [pct(s[f"{prefix}_{k}_mean"], s[f"{prefix}_{k}_std"]) for k in RETRIEVAL_KEYS]
                for s in summaries if not math.isnan(s[f"{prefix}_map_at_r_mean"])]
        if rows:
            md += [f"## {title}", "",
                   f"Every image of {what} is a query against all the others, by cosine similarity of the "
                   "embeddings, itself excluded (pytorch-metric-learning's AccuracyCalculator; "
                   "src/analysis/retrieval.py): P@1 = its nearest neighbour shares its label; R-precision = share "
                   "of its R nearest neighbours with its label (R = the other images of that label); MAP@R = mean "
                   "of the precision at each of those R ranks that holds a match. NMI / AMI: k-means of the unit "
                   "embeddings (k = number of labels) against the labels. All in %.", "",
                   table(["configuration", *RETRIEVAL_HEADERS], rows), ""]
    return md


def recipe_warnings(groups: Sequence[Group]) -> list[str]:
    lines = []
    for group in groups:
        diff = group.differing_settings()
        if diff:
            shown = "; ".join(f"`{k}`: {', '.join(v)}" for k, v in list(diff.items())[:6])
            more = f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""
            lines.append(f"- **{group.label}** mixes runs that differ in {shown}{more}.")
    return ["## Warnings", "", *lines, ""] if lines else []


def confusion_section(groups: Sequence[Group], grid: str | None) -> list[str]:
    md = ["## Test confusion (summed over seeds)", ""]
    if grid:
        md += [f"![confusion matrices]({grid})", ""]
    for group in groups:
        matrix, names, note = group.confusion()
        if matrix is None:
            md += [f"**{group.label}**: no test confusion matrix recorded.", ""]
            continue
        pairs = confused_pairs(matrix, names)
        md.append(f"**{group.label}**: most confused pairs (both directions; a→b = true a predicted b)"
                  + (f"; {note}" if note else "") + ":")
        md.append("")
        md.append(table(["#", "pair", "count", "a→b", "b→a", "share of errors (%)"],
                        [[i + 1, f"{p['a']} <-> {p['b']}", p["count"], p["a_as_b"], p["b_as_a"],
                          pct(p["share_of_errors"])] for i, p in enumerate(pairs)]))
        md.append("")
    return md


def problem_section(problems: Sequence[Run]) -> list[str]:
    if not problems:
        return ["## Runs not used", "", "None: every run folder finished with a test result.", ""]
    rows = [[_shown(run.folder), run.status, run.loss if run.record or run.config else "?",
             run.m if run.m is not None else "", run.seed if run.seed is not None else "", run.reason]
            for run in problems]
    return ["## Runs not used", "",
            "Failed, interrupted, unfinished or unreadable runs: not in any number above.", "",
            table(["folder", "status", "loss", "m", "seed", "reason"], rows), ""]


def _shown(folder: Path) -> str:
    """A folder relative to the working directory when it lies below it, else absolute."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)
