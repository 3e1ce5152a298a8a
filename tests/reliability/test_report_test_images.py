"""Two figures under one name (issue 27.8): a run's own test may have scored part of the test set
(``trainer.limit_test_batches``) while ``python -m src.evaluate`` scores all of it. The report
shows the figure on more images, says which one it shows and on how many images, keeps the other
in runs.csv, and flags a configuration whose seeds were tested on different numbers of images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from src import report
from tests.study.fabricate import write_run


def _evaluation(folder: Path, test_acc: float, test_images: int | None) -> None:
    evaluation = {"status": "finished", "best_checkpoint": True, "evaluated_at": "2026-12-01T10:00:00+0000",
                  "test_acc": test_acc, "test_images": test_images}
    (folder / "evaluation.json").write_text(json.dumps(evaluation))


def _rows(out: Path, name: str) -> dict[str, dict[str, str]]:
    with (out / name).open() as f:
        return {Path(row.get("folder") or row["configuration"]).name: row for row in csv.DictReader(f)}


def test_the_report_names_the_figure_it_shows_and_its_image_count(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    full = write_run(sweep / "0", "softmax", None, 0, 0.90)  # its own test: 1,000 images (the confusion's total)
    _evaluation(full, 0.80, 2000)  # re-tested on more images: shown
    fewer = write_run(sweep / "1", "softmax", None, 1, 0.92)
    _evaluation(fewer, 0.70, 100)  # re-tested on fewer images: the run's own figure stays
    write_run(sweep / "2", "softmax", None, 2, 0.94)  # never evaluated
    out = tmp_path / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0

    runs = _rows(out, "runs.csv")
    assert (runs["0"]["test_acc"], runs["0"]["test_source"], runs["0"]["test_images"]) == ("0.8", "evaluation.json",
                                                                                           "2000")
    assert (runs["0"]["training_test_acc"], runs["0"]["training_test_images"]) == ("0.9", "1000")
    assert (runs["1"]["test_acc"], runs["1"]["test_source"], runs["1"]["test_images"]) == ("0.92", "metrics.json",
                                                                                           "1000")
    assert (runs["2"]["test_acc"], runs["2"]["test_source"], runs["2"]["test_images"]) == ("0.94", "metrics.json",
                                                                                           "1000")
    assert _rows(out, "summary.csv")["softmax"]["test_images"] == "1000 2000"

    text = (out / "report.md").read_text()
    assert ("Test figures shown: 2 run(s) from the run's own test (`metrics.json`) on 1,000 test images; 1 run(s) "
            "from `evaluation.json` (the best checkpoint re-tested) on 2,000 test images.") in text
    assert "For 1 of them the run's own test had scored 1,000 images" in text
    assert "1 run(s) show their own test's figure beside an `evaluation.json` that tested fewer images" in text
    assert "evaluation.json tested 100 images, the run's own test 1000" in text
    assert "**Test figures on different numbers of test images are averaged together in:** softmax (1000 2000)" in text


def test_one_test_set_throughout_is_one_plain_line(tmp_path: Path) -> None:
    for seed in range(2):
        write_run(tmp_path / "sweep" / str(seed), "softmax", None, seed, 0.9)
    _evaluation(tmp_path / "sweep" / "0", 0.9, 1000)  # the same 1,000 images re-tested
    text = report.build_report(report.load_runs([tmp_path / "sweep"]), tmp_path / "out", ["x"])
    assert ("Test figures shown: 1 run(s) from the run's own test (`metrics.json`) on 1,000 test images; 1 run(s) "
            "from `evaluation.json` (the best checkpoint re-tested) on 1,000 test images.") in text
    assert "had scored" not in text and "averaged together" not in text and "beside an" not in text
