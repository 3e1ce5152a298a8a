"""The study report: ``python -m src.report <run or sweep folder> [more folders] [--out DIR]``.

Reads what finished runs saved (the run record and the resolved config in each run folder,
``src.runs.folder``, found recursively); never trains. Writes into ``--out``:

* ``report.md``: per configuration (loss, m) the mean ± std over seeds of test accuracy (honest,
  and the leakage audit's ``test_acc_leaky`` beside it), best validation accuracy, epochs, wall
  time and run count; each margin loss against the baseline (Welch's t-test, Holm-adjusted, and
  a bootstrap CI of the difference); the reference study's numbers (docs/study.md) beside
  ours with a computed verdict per claim; embedding geometry and open-set columns where the runs
  have them; embedding retrieval / clustering metrics (precision@1, R-precision, MAP@R, NMI, AMI) on
  the test set and the held-out classes; validation-accuracy curves; test confusion matrices
  summed over seeds and the most confused class pairs; and every run that could not be used
  (failed, unfinished, corrupt), with its reason;
* ``runs.csv`` (one row per run folder, unusable ones included), ``summary.csv`` (one row per
  configuration), ``significance.csv``, ``confused_pairs.csv`` and the PNG figures.

A run folder that holds an evaluation of its best checkpoint (``python -m src.evaluate``: re-tested
later, without training, on all of the test set) contributes that file's test figures and analyses
instead of the training record's, unless it tested fewer images than the run's own test; the report
says which figure each run contributes and on how many test images (``src.report.figure_source``).

The report appears whole or not at all: built aside, then put in place in one step, or, in a folder
shared with other files (``experiments/study/``), with ``report.md`` out first and in last; a killed
report's leftovers are cleaned by the next (``src.report.output``). An output folder that cannot be
written (the default ``<run>/report`` of a run on a read-only mount) is one line, exit 1.

Runs are grouped by (experiment, data, backbone, loss, m); the first three show in a label only
when the report mixes several values. A group whose runs differ in another setting is flagged.
"""

from __future__ import annotations

# The package's public names, as ``from src.report import ...`` has always given them.
from src.report.build import build_report
from src.report.claims import KNOWN_PAIRS, REFERENCE, confusion_claims, reference_rows
from src.report.cli import main
from src.report.format import num, pct, pvalue, table
from src.report.groups import BASELINE_LOSS, LOSS_ORDER, Group, baseline_for, group_runs
from src.report.runs import CONFIG, EVALUATED_KEYS, EVALUATION, RECORD, Run, find_run_folders, load_run, load_runs
from src.report.stats import (
    ALPHA,
    BOOTSTRAP,
    TOP_PAIRS,
    Comparison,
    bootstrap_ci,
    compare,
    confused_pairs,
    holm,
    mean_std,
    welch,
)
from src.report.summary import summary_row

__all__ = [
    "ALPHA", "BASELINE_LOSS", "BOOTSTRAP", "CONFIG", "EVALUATED_KEYS", "EVALUATION", "KNOWN_PAIRS", "LOSS_ORDER",
    "RECORD", "REFERENCE", "TOP_PAIRS", "Comparison", "Group", "Run", "baseline_for", "bootstrap_ci", "build_report",
    "compare", "confused_pairs", "confusion_claims", "find_run_folders", "group_runs", "holm", "load_run",
    "load_runs", "main", "mean_std", "num", "pct", "pvalue", "reference_rows", "summary_row", "table", "welch",
]
