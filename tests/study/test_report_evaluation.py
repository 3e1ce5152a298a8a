"""The report prefers a run's evaluation.json (python -m src.evaluate) and shows the embedding
retrieval / clustering tables (issue 15)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from src import report
from tests.study.fabricate import write_run

RETRIEVAL = {"precision_at_1": 0.8, "r_precision": 0.6, "map_at_r": 0.5, "nmi": 0.7, "ami": 0.65}


def _evaluation(folder: Path, test_acc: float, **extra: object) -> None:
    evaluation = {"status": "finished", "best_checkpoint": True, "evaluated_at": "2026-11-24T10:00:00+0000",
                  "test_acc": test_acc, "retrieval": RETRIEVAL,
                  "open_set": {"roc_auc": 0.9, "retrieval": {**RETRIEVAL, "map_at_r": 0.3}}, **extra}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))


def test_report_prefers_evaluation_and_shows_retrieval(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    a = write_run(root / "0_softmax", "softmax", None, 0, 0.90)
    b = write_run(root / "1_softmax", "softmax", None, 1, 0.92)
    c = write_run(root / "2_softmax", "softmax", None, 2, 0.94)
    _evaluation(a, 0.80)
    _evaluation(b, 0.70, best_checkpoint=False)  # another checkpoint: never replaces the record
    (c / "evaluation.json").write_text("{not json")  # unreadable: the record stands
    runs = {run.folder.name: run for run in report.load_runs([root])}
    assert runs["0_softmax"].value("test_acc") == 0.80 and runs["0_softmax"].evaluated
    assert runs["0_softmax"].value("test_acc_leaky") is None  # the evaluation reported none: no stale figure
    assert runs["1_softmax"].value("test_acc") == 0.92 and not runs["1_softmax"].evaluated
    assert runs["2_softmax"].value("test_acc") == 0.94

    out = tmp_path / "report"
    text = report.build_report(list(runs.values()), out, [str(root)])
    assert "1 of the used runs contribute the figures of their `evaluation.json`" in text
    assert "## Embedding retrieval and clustering (test set)" in text
    assert "| softmax | 80.00 | 60.00 | 50.00 | 70.00 | 65.00 |" in text  # one run has them: no std
    assert "## Embedding retrieval and clustering (held-out classes)" in text
    assert "| softmax | 80.00 | 60.00 | 30.00 | 70.00 | 65.00 |" in text
    summary = next(csv.DictReader((out / "summary.csv").open()))
    assert float(summary["test_acc_mean"]) == (0.80 + 0.92 + 0.94) / 3
    rows = {Path(r["folder"]).name: r for r in csv.DictReader((out / "runs.csv").open())}
    assert rows["0_softmax"]["retrieval_map_at_r"] == "0.5" and rows["0_softmax"]["evaluated_at"]
    assert rows["1_softmax"]["retrieval_map_at_r"] == "" and rows["1_softmax"]["evaluated_at"] == ""


def test_no_retrieval_no_section(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep" / "0", "softmax", None, 0, 0.9)
    text = report.build_report(report.load_runs([tmp_path / "sweep"]), tmp_path / "r", ["x"])
    assert "Embedding retrieval" not in text and "evaluation.json" not in text
