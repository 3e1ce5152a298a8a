"""``report.md`` and every other output file of one report, from the loaded runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from src.report.confusions import confusion_change_section
from src.report.figure_source import figure_source_lines
from src.report.figures import confusion_grid, curve_figures
from src.report.format import num, pct, table, write_csv
from src.report.gap import CSV_HEADER, gap_section, is_audit_run
from src.report.groups import BASELINE_LOSS, baseline_for, group_runs
from src.report.provenance import MachineLegend, provenance_section
from src.report.ranking import ranking_section
from src.report.recipe import recipe_cells
from src.report.runs import EVALUATION, Run
from src.report.sections import (
    confusion_section,
    geometry_section,
    open_set_section,
    problem_section,
    recipe_warnings,
    reference_section,
    retrieval_section,
    significance_section,
)
from src.report.stats import Comparison, compare, holm
from src.report.summary import summary_row, write_csvs


def build_report(runs: Sequence[Run], out: Path, inputs: Sequence[str]) -> str:
    """Write every output file into ``out``; returns the markdown text."""
    out.mkdir(parents=True, exist_ok=True)
    # Reference-protocol audit runs feed only their own section (src/report/gap.py), never the tables.
    groups = group_runs(run for run in runs if not is_audit_run(run))
    problems = [run for run in runs if not run.usable]

    comparisons: dict[int, Comparison] = {}
    for group in groups:
        if group.loss != BASELINE_LOSS:
            comparisons[id(group)] = compare(group, baseline_for(group, groups))
    tested = [c for c in comparisons.values() if not c.note]
    for comp, adjusted in zip(tested, holm([c.p for c in tested]), strict=True):
        comp.p_holm = adjusted

    summaries = [summary_row(g) for g in groups]
    write_csvs(out, runs, groups, summaries, comparisons)
    curves = curve_figures(groups, out) if groups else []
    grid = confusion_grid(groups, out) if groups else None

    md: list[str] = ["# Margin-loss study report", ""]
    md.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m src.report` from: "
              + ", ".join(f"`{p}`" for p in inputs) + ".")
    md.append(f"{len(runs)} run folder(s): {sum(r.usable for r in runs)} finished and used, "
              f"{len(problems)} not used (listed at the end).")
    evaluated = sum(r.usable and r.evaluated for r in runs)
    if evaluated:
        md.append(f"{evaluated} of the used runs contribute the figures of their `{EVALUATION}` (the best "
                  "checkpoint re-tested by `python -m src.evaluate`, no training) instead of the training record's.")
    md += figure_source_lines(runs, groups)
    md += ["", "Test accuracy is the honest one: the best-validation checkpoint evaluated once on the "
           "test set with label-free prediction. *Leaky* is the leakage audit: the same checkpoint scored by the "
           "argmax of the margin logits built with the true label (a margin on the true class only, which "
           "lowers accuracy; the reference's own label mixing is the reference-protocol audit's); it is not a "
           "valid accuracy. "
           "Mean ± sample std over seeds; accuracies in %.", ""]

    legend = MachineLegend(runs)
    gap_md, gap_rows = gap_section(runs, table, out)
    if not groups:
        md += ["**No finished run with a test accuracy was found" + (" outside the reference-protocol audit.**"
                                                                    if gap_md else ".**"), ""]
    else:
        md += ["## Summary", ""]
        md.append(table(
            ["configuration", "n", "seeds", "backbone", "epochs", "training images", "test acc", "leaky acc (audit)",
             "best val acc", "wall time (min)"],
            [[s["configuration"], s["n_runs"], s["seeds"], *recipe_cells(g), pct(s["test_acc_mean"], s["test_acc_std"]),
              pct(s["test_acc_leaky_mean"], s["test_acc_leaky_std"]),
              pct(s["val_acc_best_mean"], s["val_acc_best_std"]),
              num(s["wall_time_s_mean"] / 60, s["wall_time_s_std"] / 60)]
             for g, s in zip(groups, summaries, strict=True)]))
        md.append("")
        md += ranking_section(groups, summaries, comparisons, legend)
        md += significance_section(comparisons, groups)
        md += reference_section(groups, comparisons)
        md += geometry_section(summaries)
        md += open_set_section(summaries)
        md += retrieval_section(summaries)
        md += recipe_warnings(groups)
        if curves:
            md += ["## Validation accuracy", ""]
            md += [f"![{loss}]({name})" for loss, name in curves] + [""]
        md += confusion_section(groups, grid)
        md += confusion_change_section(groups, table)
    if gap_md:
        md += gap_md
        write_csv(out / "gap_explained.csv", CSV_HEADER, gap_rows)
    labels = {id(run): group.label for group in groups for run in group.runs}

    def label(run: Run) -> str:
        if id(run) in labels:
            return labels[id(run)]
        m = f" m={run.m:g}" if run.m is not None else ""
        return f"{run.loss}{m} (reference protocol)" if is_audit_run(run) else f"{run.loss}{m}"

    md += provenance_section(runs, label, table, legend)
    md += problem_section(problems)
    text = "\n".join(md).rstrip() + "\n"
    (out / "report.md").write_text(text)
    return text
