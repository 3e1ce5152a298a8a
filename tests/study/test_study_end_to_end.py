"""One tiny real run with held-out classes and a 2-D backbone (the study recipe), then
``python -m src.report`` on it in a subprocess, as a user types it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from src.training.pipeline import run
from tests.conftest import REPO


def test_tiny_run_records_analyses_and_reports(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(
        "experiment=study_quick", "study_config=arcface_m0.5", "data.train_subset=null", "trainer.max_epochs=1",
        "trainer.limit_train_batches=3", "backbone=small2d", "data.held_out_classes=[8,9]",
    )
    job = tmp_path / "run"
    run(cfg, job)
    record = json.loads((job / "metrics.json").read_text())
    assert record["status"] == "finished" and record["experiment"] == "study_quick"
    assert record["name"] == "arcface_m0.5" and record["loss_params"]["m"] == 0.5
    assert len(record["class_names"]) == 8 and "Bag" not in record["class_names"]
    geometry = record["geometry"]
    assert geometry["num_classes"] == 8 and len(geometry["classes"]) == 8
    assert 0 <= geometry["min_inter_deg"] <= 180 and 0 <= geometry["max_intra_deg"] <= 180
    open_set = record["open_set"]
    assert open_set["held_out_classes"] == [8, 9] and open_set["classes"] == ["Bag", "Ankle boot"]
    assert 0.0 <= open_set["roc_auc"] <= 1.0 and 0.0 <= open_set["recall_at_1"] <= 1.0
    assert {"tar_far1e-2", "tar_far1e-3"} <= set(open_set)
    assert (job / "embeddings" / "epoch000.png").stat().st_size > 1000  # 2-D: plane and circle
    projector = (job / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "test' in projector and 'tensor_name: "open_set' in projector
    assert list(job.glob("*/test/sprite.png")) and list(job.glob("*/test/metadata.tsv"))
    metadata = next(job.glob("*/test/metadata.tsv")).read_text().split()
    assert set(metadata) <= set(record["class_names"]) | {"T-shirt/top"}

    out = tmp_path / "report"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "src.report", str(tmp_path), "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "report.md").read_text()
    assert "## Open-set verification" in text and "## Embedding geometry" in text
    assert "no baseline runs" in text  # a margin loss alone: nothing to compare against
    with (out / "summary.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["configuration"] == "arcface m=0.5" and row["n_runs"] == "1"
    assert row["open_set_roc_auc_mean"] and row["geometry_min_inter_deg_mean"] and row["test_acc_leaky_mean"]
    assert (out / "confusion_grid.png").exists() and (out / "curves_arcface.png").exists()
