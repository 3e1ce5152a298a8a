"""The "gap explained" table: from the reference's reported figures to the honest ones, one defect
removed per row, for softmax, SphereFace m=2 and ArcFace m=0.5.

Inputs are run records of two kinds:

* audit runs (``experiment=reference_audit``, src/callbacks/reference_audit.py): one run per
  (configuration, seed) gives rows 1-3 from its per-epoch history and its final test;
* honest study runs (``experiment=study`` only) give row 4.

Rows, each as mean ± sample std over seeds with a 95% t-interval of the mean:

0. reported: the reference's one Keras run (``src.report.claims.REFERENCE``);
1. reference protocol (audit) reproduced: labels fed to the head at test, best epoch on test
   (max over epochs of ``audit/test_acc_reference_protocol``);
2. labels no longer reach the head (still the best epoch on test): max over epochs of
   ``audit/test_acc_label_free``;
3. checkpoint chosen on validation, test once: the audit run's own final ``test_acc``;
4. the honest study: this project's loss definitions under the study's one recipe.

Step 0 -> 1 changes two things at once, one run -> the mean over seeds and Keras -> this port;
the single-run 95% prediction interval of row 1 says whether one run could have hit the
reported figure. Each step's share of a margin loss's advantage over softmax is the change of
the difference of means; its interval is Welch-Satterthwaite's, on per-run changes where a step
keeps the same runs (1 -> 2 -> 3) and on independent means where it does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.report.claims import REFERENCE
from src.report.figures import history_panels
from src.report.format import num
from src.report.stats import Estimate, combine, mean_std, prediction_interval
from src.runs.folder import CHECKPOINTS, LAST_CHECKPOINT
from src.utils.text import finite_number as _finite

REFERENCE_KEY = "audit/test_acc_reference_protocol"
LABEL_FREE_KEY = "audit/test_acc_label_free"
AUDIT_EXPERIMENT = "reference_audit"
# Row 4 comes from the full honest study only (not study_quick or other experiments).
STUDY_EXPERIMENT = "study"
BASELINE = "softmax"

# configuration -> (audit head's loss name, study loss name, m); the reported figure is REFERENCE's
# for (study loss, m).
CONFIGS: dict[str, tuple[str, str, float | None]] = {
    "softmax": ("softmax", "softmax", None),
    "sphereface_m2": ("reference_sphereface", "sphereface", 2.0),
    "arcface_m0.5": ("reference_arcface", "arcface", 0.5),
}

ROWS = (
    "reported (reference: one Keras run)",
    "reference protocol (audit) reproduced: labels fed at test, best epoch on test",
    "labels no longer reach the head at test (best epoch still on test)",
    "checkpoint chosen on validation, test once",
    "honest study: one recipe, this project's loss",
)
STEPS = (
    "one run -> mean over seeds, Keras -> this port",
    "labels no longer reach the head at test",
    "checkpoint chosen on validation, test once",
    "this project's loss definition and study recipe",
)


# ------------------------------------------------------------------------------------------
# Runs -> per-seed values
# ------------------------------------------------------------------------------------------


def is_audit_run(run: Any) -> bool:
    """A reference-protocol audit run: by its experiment, or by the audit keys in its history."""
    if run.record.get("experiment") == AUDIT_EXPERIMENT:
        return True
    history = run.record.get("history")
    return isinstance(history, list) and any(isinstance(r, dict) and REFERENCE_KEY in r for r in history)


def _history_max(run: Any, key: str) -> float | None:
    values = [value for _, value in run.series(key)]
    return max(values) if values else None


@dataclass
class ConfigValues:
    """Per-seed values in % for one configuration: rows 1-3 by seed (same runs), row 4 by seed."""

    config: str
    reported: float
    audit: dict[Any, tuple[float, float, float]]
    study: dict[Any, float]
    audit_runs: list[Any]

    def row(self, index: int) -> float | list[float]:
        if index == 0:
            return self.reported
        if index == 4:
            return list(self.study.values())
        return [values[index - 1] for values in self.audit.values()]


def _matches(run: Any, loss: str, m: float | None) -> bool:
    return (run.usable and run.loss == loss and (m is None or run.m == m)
            and run.data == "fashion_mnist" and run.backbone == "seed_cnn")


def collect(runs: Sequence[Any]) -> list[ConfigValues]:
    """Per-seed values for each configuration that has at least one audit run."""
    out = []
    for config, (audit_loss, study_loss, m) in CONFIGS.items():
        reported = REFERENCE[(study_loss, m)]
        audit: dict[Any, tuple[float, float, float]] = {}
        study: dict[Any, float] = {}
        audit_runs = []
        for run in runs:
            if is_audit_run(run) and _matches(run, audit_loss, m):
                values = (_history_max(run, REFERENCE_KEY), _history_max(run, LABEL_FREE_KEY),
                          _finite(run.record.get("test_acc")))
                if all(v is not None for v in values):
                    audit[run.seed] = tuple(100.0 * v for v in values)  # type: ignore[operator]
                    audit_runs.append(run)
            elif run.record.get("experiment") == STUDY_EXPERIMENT and _matches(run, study_loss, m):
                study[run.seed] = 100.0 * float(run.record["test_acc"])
        if audit:
            out.append(ConfigValues(config, reported, audit, study, audit_runs))
    return out


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def row_estimates(values: ConfigValues) -> list[tuple[Estimate, float, int]]:
    """Per row: (mean with 95% interval, sample std, n)."""
    out = []
    for index in range(len(ROWS)):
        sample = values.row(index)
        if isinstance(sample, float):
            out.append((Estimate(sample), math.nan, 1))
            continue
        out.append((combine([(1.0, sample)]), mean_std(sample)[1], len(sample)))
    return out


def _per_run_change(values: ConfigValues, index: int) -> list[float]:
    """Within each audit run, row[index - 1] - row[index] (rows 1-3 share their runs)."""
    return [v[index - 2] - v[index - 1] for v in values.audit.values()]


def contributions(margin: ConfigValues, base: ConfigValues) -> tuple[list[Estimate], list[Estimate]]:
    """(difference margin - base per row, share of each step in the reported difference). The
    steps' shares add up to row 0's difference minus row 4's."""
    diffs = [combine([(1.0, margin.row(i)), (-1.0, base.row(i))]) for i in range(len(ROWS))]
    shares = []
    for index in range(1, len(ROWS)):
        if index in (2, 3):  # same runs before and after: per-run changes
            terms = [(1.0, _per_run_change(margin, index)), (-1.0, _per_run_change(base, index))]
        else:
            terms = [(1.0, margin.row(index - 1)), (-1.0, margin.row(index)),
                     (-1.0, base.row(index - 1)), (1.0, base.row(index))]
        shares.append(combine(terms))
    return diffs, shares


def _ci(e: Estimate) -> str:
    return "–" if math.isnan(e.low) else f"[{e.low:.2f}, {e.high:.2f}]"


def _signed(e: Estimate) -> str:
    return "–" if math.isnan(e.value) else f"{e.value:+.2f}"


def gap_figure(collected: Sequence[ConfigValues], out: Path, name: str = "reference_protocol_audit.png") -> str:
    """Per configuration, the test accuracy after every epoch: label-fed (the reference protocol)
    and label-free, mean over seeds, with the reported figure."""
    return history_panels(
        [(f"{v.config} (n={len(v.audit_runs)})", v.audit_runs, v.reported) for v in collected],
        [(REFERENCE_KEY, "labels fed to the head (reference protocol)", "-"), (LABEL_FREE_KEY, "label-free", "--")],
        out, name, "Reference protocol (audit): test set scored after every epoch -- not a valid accuracy",
        "TEST accuracy, %",
    )


def gap_section(runs: Sequence[Any], table: Callable[[Sequence[str], Any], str],
                out: Path | None = None) -> tuple[list[str], list[list[Any]]]:
    """Markdown lines of the section and CSV rows (and, with ``out``, its figure); empty when
    there is no audit run."""
    collected = collect(runs)
    if not collected:
        return [], []
    by_name = {v.config: v for v in collected}
    md = ["## The gap explained: reference protocol (audit) -> honest figure", "",
          "Rows 1-3 come from the reference-protocol (audit) runs (`experiment=reference_audit`): the "
          "reference's own heads and label mixing, its recipe (Adadelta lr 1, batch 128, no augmentation), "
          "the test set scored after every epoch. Row 1 is **not a valid accuracy**: the true test labels "
          "reach the head, and the epoch is picked on the test set, as the reference did. Row 4 is the honest "
          "study. Accuracies in %; mean ± sample std over seeds, 95% t-interval of the mean; the single-run "
          "column is the 95% prediction interval for one more run. The softmax layer took no label, so its "
          "rows 1 and 2 coincide.", ""]
    csv_rows: list[list[Any]] = []
    rows = []
    for values in collected:
        for index, (est, std, n) in enumerate(row_estimates(values)):
            sample = values.row(index)
            single = prediction_interval(sample) if isinstance(sample, list) else (math.nan, math.nan)
            shown_n = "1 (reported)" if index == 0 else str(n)
            rows.append([values.config, f"{index}. {ROWS[index]}", shown_n,
                         num(est.value, std, digits=2), _ci(est),
                         "–" if math.isnan(single[0]) else f"[{single[0]:.2f}, {single[1]:.2f}]"])
            csv_rows.append(["row", values.config, index, ROWS[index], n, est.value, std, est.low, est.high,
                             single[0], single[1]])
    md.append(table(["configuration", "step (reference protocol (audit) rows 1-3)", "n", "accuracy",
                     "95% CI", "single run 95%"], rows))
    md.append("")
    for values in collected:
        est = row_estimates(values)[1][0]
        low, high = prediction_interval(values.row(1))  # type: ignore[arg-type]
        if math.isnan(est.value):
            continue
        gap = est.value - values.reported
        where = f"{abs(gap):.2f} points {'below' if gap < 0 else 'above'} the reported {values.reported:.2f}%"
        if math.isnan(low):
            verdict = "fewer than 2 seeds: no single-run interval to compare with."
        elif low <= values.reported <= high:
            verdict = (f"the reported figure is inside the single-run 95% interval [{low:.2f}, {high:.2f}]: "
                       "seed noise can explain it.")
        else:
            verdict = (f"the reported figure is outside the single-run 95% interval [{low:.2f}, {high:.2f}]: seed "
                       "noise alone does not explain it (port differences, Keras/TF numerics, the script's state).")
        md.append(f"- {values.config}: the reproduced reference protocol (audit) gives {est.value:.2f}%, {where}; "
                  + verdict)
    md.append("")
    base = by_name.get(BASELINE)
    for name in ("sphereface_m2", "arcface_m0.5"):
        margin = by_name.get(name)
        if margin is None or base is None:
            continue
        diffs, shares = contributions(margin, base)
        md += [f"### {name} vs softmax: where the reported {diffs[0].value:+.2f} points go "
               "(reference protocol (audit) -> honest)", ""]
        share_rows = [[f"{i}. {ROWS[i]}", _signed(d), _ci(d)] for i, d in enumerate(diffs)]
        md.append(table(["row", f"{name} - softmax", "95% CI"], share_rows))
        md.append("")
        md.append(table(["step", "points of the difference it accounts for", "95% CI"],
                        [[f"{i} -> {i + 1}: {STEPS[i]}", _signed(s), _ci(s)] for i, s in enumerate(shares)]))
        md.append("")
        for i, d in enumerate(diffs):
            csv_rows.append(["difference", name, i, ROWS[i], "", d.value, "", d.low, d.high, "", ""])
        for i, s in enumerate(shares):
            csv_rows.append(["step", name, i + 1, STEPS[i], "", s.value, "", s.low, s.high, "", ""])
    decode_md, decode_csv = final_weights_section(collected, table)
    md += decode_md
    csv_rows += decode_csv
    if out is not None:
        md += [f"![reference protocol (audit)]({gap_figure(collected, out)})", ""]
    machines = sorted({str(r.record.get("machine")) for r in runs if is_audit_run(r) and r.usable})
    if machines:
        md += ["Reference-protocol (audit) runs ran on: " + "; ".join(f"`{m}`" for m in machines) + ".", ""]
    return md, csv_rows


# ------------------------------------------------------------------------------------------
# A label-free reading of the reference's layers (final weights)
# ------------------------------------------------------------------------------------------

LAST_OF_A_RUN = f"RUN/{CHECKPOINTS}/{LAST_CHECKPOINT}"  # how a command names a run's last checkpoint
# (key in reference_decode, column label, scale): accuracies are fractions shown in %.
DECODE_COLUMNS = (
    ("label_fed_acc", "labels fed (reference protocol)", 100.0),
    ("label_free_acc", "label-free: argmax of the cosines", 100.0),
    ("self_consistent_acc", "label-free: self-consistent label", 100.0),
    ("consistent_labels_per_image", "consistent labels per image", 1.0),
)


def final_weights_decode(run: Any) -> dict[str, float] | None:
    """The ``reference_decode`` of the run's final weights, if ``src.evaluate`` scored them."""
    decode = (run.last_checkpoint_evaluation() or {}).get("reference_decode")
    if not isinstance(decode, dict):
        return None
    values = {key: _finite(decode.get(key)) for key, _, _ in DECODE_COLUMNS}
    return None if any(v is None for v in values.values()) else values  # type: ignore[return-value]


def final_weights_section(collected: Sequence[ConfigValues], table: Callable[[Sequence[str], Any], str],
                          ) -> tuple[list[str], list[list[Any]]]:
    """Per reference head: the same final weights read three ways (mean ± std over seeds)."""
    rows, csv_rows = [], []
    for values in collected:
        decoded = [d for d in (final_weights_decode(run) for run in values.audit_runs) if d is not None]
        if not decoded:
            continue
        row = [values.config, str(len(decoded))]
        for key, label, scale in DECODE_COLUMNS:
            mean, std = mean_std([d[key] * scale for d in decoded])
            row.append(num(mean, std, digits=2))
            csv_rows.append(["final_weights", values.config, "", label, len(decoded), mean, std, "", "", "", ""])
        rows.append(row)
    if not rows:
        return [], []
    md = ["### The reference's layers read without labels (audit, final weights)", "",
          f"The same weights (each audit run's last epoch, `python -m src.evaluate {LAST_OF_A_RUN}`; "
          "no epoch is picked on the test set) scored three ways: with the true labels fed to the layer, as "
          "the reference did; by the plain argmax of the cosines; and by trying every label's rule and keeping "
          "a label whose rule picks it (src/analysis/reference_decode.py). Accuracies in %, mean ± sample std "
          "over seeds; the last column counts the labels per test image whose own rule picks them.", "",
          table(["configuration", "n", *(label for _, label, _ in DECODE_COLUMNS)], rows), ""]
    return md, csv_rows


CSV_HEADER = ["kind", "configuration", "index", "what", "n", "value", "std", "ci_low", "ci_high",
              "single_run_low", "single_run_high"]
