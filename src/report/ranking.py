""""Which loss would you choose today": every configuration ranked by mean test accuracy, beside
its difference to the baseline (Holm-corrected), its retrieval figures and what an epoch cost on
the machine that trained it."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from src.report.format import pct, table
from src.report.groups import BASELINE_LOSS, Group
from src.report.provenance import MachineLegend, machines
from src.report.stats import ALPHA, Comparison


def minutes_per_epoch(group: Group, legend: MachineLegend | None = None) -> list[tuple[str, float]]:
    """(machine, median training wall time per epoch in minutes) for each machine that trained the
    group's runs, so that a row never mixes two machines' speeds into one figure. Machines are the
    legend's short names where one is given. Wall time includes validation and depends on what else
    the machine ran."""
    per_machine: dict[str, list[float]] = {}
    for run in group.runs:
        wall, epochs = run.value("wall_time_s"), run.value("epochs")
        where = legend.of(run) if legend is not None else machines(run)
        if wall and epochs and where:
            per_machine.setdefault(where, []).append(wall / epochs / 60.0)
    return [(where, statistics.median(costs)) for where, costs in sorted(per_machine.items())]


def _cost(costs: list[tuple[str, float]]) -> str:
    return "; ".join(f"{minutes:.2f} ({where})" for where, minutes in costs) or "–"


def _difference(comp: Comparison | None) -> str:
    if comp is None:
        return "(baseline)"
    if math.isnan(comp.diff):
        return "–"
    low, high = comp.ci
    interval = "" if math.isnan(low) else f" [{100 * low:+.2f}, {100 * high:+.2f}]"
    return f"{100 * comp.diff:+.2f}{interval}"


def ranking_section(groups: Sequence[Group], summaries: Sequence[dict[str, Any]],
                    comparisons: dict[int, Comparison], legend: MachineLegend | None = None) -> list[str]:
    """The ranking table and a few sentences on what is and is not significant."""
    if len(groups) < 2:
        return []
    order = sorted(range(len(groups)), key=lambda i: -(summaries[i]["test_acc_mean"]
                                                       if not math.isnan(summaries[i]["test_acc_mean"]) else -1.0))
    rows = []
    for rank, i in enumerate(order, start=1):
        group, summary = groups[i], summaries[i]
        comp = comparisons.get(id(group))
        rows.append([
            rank, group.label, summary["n_runs"], pct(summary["test_acc_mean"], summary["test_acc_std"]),
            _difference(comp), comp.verdict if comp else "(baseline)",
            pct(summary["retrieval_precision_at_1_mean"], summary["retrieval_precision_at_1_std"]),
            pct(summary["retrieval_map_at_r_mean"], summary["retrieval_map_at_r_std"]),
            _cost(minutes_per_epoch(group, legend)),
        ])
    verdicts: dict[str, list[str]] = {}
    for group in groups:
        comp = comparisons.get(id(group))
        if comp is not None:
            verdicts.setdefault(comp.verdict, []).append(group.label)
    sizes = sorted({len(g.runs) for g in groups})
    md = ["## Which loss would you choose?", "",
          f"Every configuration ranked by mean test accuracy. Difference to {BASELINE_LOSS} of the same recipe in "
          "percentage points with its bootstrap 95% CI; the verdict is Welch's t-test, Holm-adjusted over all "
          f"comparisons of this report (significant: p < {ALPHA}). P@1 and MAP@R are the test embeddings' "
          "retrieval scores (cosine similarity). Cost: median training wall time per epoch in minutes (validation "
          "included) on each machine that trained the configuration (M1, M2, ...: listed under Provenance), "
          "which other work may have shared.", "",
          table(["rank", "configuration", "n", "test acc", "vs baseline (pp)", "verdict", "P@1", "MAP@R",
                 "min / epoch (machine)"], rows), ""]
    better = verdicts.get("significantly better", [])
    worse = verdicts.get("significantly worse", [])
    same = verdicts.get("no significant difference", [])
    untested = [label for verdict, labels in verdicts.items() if verdict not in
                ("significantly better", "significantly worse", "no significant difference") for label in labels]
    md.append(f"Significantly better than {BASELINE_LOSS}: " + (", ".join(better) if better else "none") + ". "
              "Significantly worse: " + (", ".join(worse) if worse else "none") + ". "
              + (f"Not distinguishable from {BASELINE_LOSS} at n = {', '.join(map(str, sizes))} seeds: "
                 + ", ".join(same) + ". " if same else "")
              + (f"Not tested (too few runs or no baseline): {', '.join(untested)}." if untested else ""))
    md.append("")
    return md
