"""The "gap explained" table (src/report/gap.py) on fabricated run records: its arithmetic, its
intervals and its place in the report."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from fabricate import write_run

from src.report import build_report, load_runs
from src.report.gap import LABEL_FREE_KEY, REFERENCE_KEY, collect, contributions
from src.report.stats import combine, prediction_interval

T2 = 4.302652729749464  # t quantile 0.975 with 2 degrees of freedom
SEEDS = (0, 1, 2)
# Per seed: (max label-fed test acc, max label-free test acc, final test acc) of an audit run.
AUDIT = {
    ("softmax", None): [(0.940, 0.940, 0.930), (0.942, 0.942, 0.932), (0.944, 0.944, 0.934)],
    ("reference_sphereface", 2.0): [(0.960, 0.920, 0.910), (0.962, 0.922, 0.913), (0.964, 0.924, 0.916)],
}
STUDY = {("softmax", None): [0.935, 0.937, 0.939], ("sphereface", 2.0): [0.925, 0.926, 0.930]}


def _audit_history(ref: float, free: float) -> list[dict]:
    # The maxima sit in the middle epoch; the others are lower.
    return [{"epoch": e, "val/acc": 0.9 + 0.01 * e, REFERENCE_KEY: ref - d, LABEL_FREE_KEY: free - d}
            for e, d in enumerate((0.01, 0.0, 0.005))]


def _fabricate(root: Path, with_study: bool = True) -> Path:
    for (loss, m), per_seed in AUDIT.items():
        for seed, (ref, free, test) in zip(SEEDS, per_seed, strict=True):
            write_run(root / "audit" / f"{loss}_{seed}", loss=loss, m=m, seed=seed, test_acc=test,
                      experiment="reference_audit", extra={"history": _audit_history(ref, free)})
    if with_study:
        for (loss, m), accs in STUDY.items():
            for seed, acc in zip(SEEDS, accs, strict=True):
                write_run(root / "study" / f"{loss}_{seed}", loss=loss, m=m, seed=seed, test_acc=acc)
    return root


def test_rows_and_step_shares_hand_computed(tmp_path: Path) -> None:
    values = {v.config: v for v in collect(load_runs([_fabricate(tmp_path)]))}
    assert set(values) == {"softmax", "sphereface_m2"}
    sphere, soft = values["sphereface_m2"], values["softmax"]
    assert sphere.row(0) == 95.32 and soft.row(0) == 94.15
    assert sphere.row(1) == pytest.approx([96.0, 96.2, 96.4])  # max over epochs, label-fed
    assert sphere.row(2) == pytest.approx([92.0, 92.2, 92.4])  # max over epochs, label-free
    assert sphere.row(3) == pytest.approx([91.0, 91.3, 91.6])  # validation-selected, tested once
    assert sphere.row(4) == pytest.approx([92.5, 92.6, 93.0])  # the honest study

    diffs, shares = contributions(sphere, soft)
    assert [d.value for d in diffs] == pytest.approx([1.17, 2.0, -2.0, -1.9, -1.0])
    assert [s.value for s in shares] == pytest.approx([-0.83, 4.0, -0.1, -0.9])
    # The shares account for the whole change from the reported to the honest difference.
    assert sum(s.value for s in shares) == pytest.approx(diffs[0].value - diffs[-1].value)
    # Labels removed: softmax's head never saw labels (0 change), SphereFace loses exactly 4 in every run.
    assert shares[1].interval == pytest.approx((4.0, 4.0))
    # Validation selection: per-run changes (1.0, 0.9, 0.8) vs (1, 1, 1): Welch with df = 2.
    half = T2 * math.sqrt(0.01 / 3)
    assert shares[2].interval == pytest.approx((-0.1 - half, -0.1 + half))


def test_intervals() -> None:
    est = combine([(1.0, [96.0, 96.2, 96.4])])
    half = T2 * 0.2 / math.sqrt(3)
    assert est.value == pytest.approx(96.2) and est.interval == pytest.approx((96.2 - half, 96.2 + half))
    assert prediction_interval([96.0, 96.2, 96.4]) == pytest.approx(
        (96.2 - T2 * 0.2 * math.sqrt(4 / 3), 96.2 + T2 * 0.2 * math.sqrt(4 / 3)))
    # A constant has no error; a single run gives no interval.
    assert combine([(1.0, 95.32), (-1.0, [96.0, 96.2, 96.4])]).interval == pytest.approx((-0.88 - half, -0.88 + half))
    assert math.isnan(combine([(1.0, [96.0])]).low)
    # Two independent samples: Welch-Satterthwaite degrees of freedom (equal variances, n = 3: df = 4).
    two = combine([(1.0, [1.0, 2.0, 3.0]), (-1.0, [2.0, 3.0, 4.0])])
    assert two.value == pytest.approx(-1.0)
    assert two.high - two.value == pytest.approx(2.7764451051977987 * math.sqrt(2 / 3))


def test_report_includes_the_gap_section_and_keeps_audit_runs_out_of_the_tables(tmp_path: Path) -> None:
    root = _fabricate(tmp_path / "runs")
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    section = text[text.index("## The gap explained"):]
    assert "reference protocol (audit)" in section and "not a valid accuracy" in section
    assert "96.20 ± 0.20" in section  # SphereFace row 1
    assert "96.20%, 0.88 points above the reported 95.32%; the reported figure is inside" in section
    # The summary table holds the study's groups only.
    summary = text[text.index("## Summary"):text.index("## The gap explained")]
    assert "reference_sphereface" not in summary and "reference_audit" not in summary
    assert "![reference protocol (audit)](reference_protocol_audit.png)" in section
    assert (tmp_path / "out" / "reference_protocol_audit.png").stat().st_size > 0
    rows = list(csv.DictReader((tmp_path / "out" / "gap_explained.csv").open()))
    steps = [r for r in rows if r["kind"] == "step" and r["configuration"] == "sphereface_m2"]
    assert [float(r["value"]) for r in steps] == pytest.approx([-0.83, 4.0, -0.1, -0.9])


def test_no_audit_runs_no_section(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed, acc in zip(SEEDS, STUDY[("softmax", None)], strict=True):
        write_run(root / f"softmax_{seed}", seed=seed, test_acc=acc)
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    assert "gap explained" not in text and not (tmp_path / "out" / "gap_explained.csv").exists()


def test_only_the_full_study_gives_the_honest_row(tmp_path: Path) -> None:
    root = _fabricate(tmp_path)
    write_run(root / "quick" / "sphereface_9", loss="sphereface", m=2.0, seed=9, test_acc=0.5,
              experiment="study_quick")
    values = {v.config: v for v in collect(load_runs([root]))}
    assert values["sphereface_m2"].row(4) == pytest.approx([92.5, 92.6, 93.0])


def test_missing_study_runs_leave_the_last_step_open(tmp_path: Path) -> None:
    values = {v.config: v for v in collect(load_runs([_fabricate(tmp_path, with_study=False)]))}
    diffs, shares = contributions(values["sphereface_m2"], values["softmax"])
    assert math.isnan(diffs[4].value) and math.isnan(shares[3].value)
    assert shares[1].value == pytest.approx(4.0)


def test_final_weights_readings_come_from_the_last_checkpoint_evaluation(tmp_path: Path) -> None:
    import json

    root = _fabricate(tmp_path / "runs")
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    assert "read without labels" not in text  # no run scored its final weights yet
    for seed, (fed, free, consistent, per_image) in enumerate([(0.94, 0.10, 0.78, 1.8), (0.95, 0.11, 0.80, 2.0)]):
        decode = {"label_fed_acc": fed, "label_free_acc": free, "self_consistent_acc": consistent,
                  "consistent_labels_per_image": per_image}
        (root / "audit" / f"reference_sphereface_{seed}" / "evaluation_last.json").write_text(
            json.dumps({"reference_decode": decode}))
    (root / "audit" / "reference_sphereface_2" / "evaluation_last.json").write_text("{broken")  # ignored
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    section = text[text.index("read without labels"):]
    # Two seeds: 94.5 ± 0.71, 10.5 ± 0.71, 79.0 ± 1.41, 1.9 ± 0.14.
    assert "| sphereface_m2 | 2 | 94.50 ± 0.71 | 10.50 ± 0.71 | 79.00 ± 1.41 | 1.90 ± 0.14 |" in section
    assert "| softmax |" not in section.split("\n\n")[2]
    rows = [r for r in csv.DictReader((tmp_path / "out" / "gap_explained.csv").open()) if r["kind"] == "final_weights"]
    assert [float(r["value"]) for r in rows] == pytest.approx([94.5, 10.5, 79.0, 1.9])
