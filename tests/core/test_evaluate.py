"""python -m src.evaluate on a tiny sweep: finished runs re-tested from their best checkpoint,
unfinished ones skipped, a damaged checkpoint a one-line error while the other runs go on, and
the training record left as it was."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from src import evaluate, report
from src.runs.folder import EVALUATION as EVALUATION_NAME
from src.training.evaluation import evaluation_precision
from src.training.pipeline import run
from src.utils.hardware import resolve_precision
from tests.conftest import REPO, TINY, compose_config

LEAN = ["backbone=small2d", "trainer.max_epochs=1", "logger.tensorboard=null", "callbacks.embeddings=null",
        "callbacks.learning_rate=null"]


@pytest.fixture(scope="module")
def sweep(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate") / "sweep"
    for name, overrides in (("0_softmax", ["loss=softmax"]), ("1_arcface", ["loss=arcface", "seed=1"]),
                            ("2_triplet", ["loss=triplet", "data.held_out_classes=[8,9]"])):
        cfg = compose_config([f"data.root={synthetic_root}", *TINY, *LEAN, *overrides], output_dir=root / name)
        run(cfg, root / name)
    failed = root / "3_failed"
    failed.mkdir()
    shutil.copy(root / "0_softmax" / "config_resolved.yaml", failed)
    (failed / "metrics.json").write_text(json.dumps({"status": "failed", "reason": "KeyboardInterrupt"}))
    return root


def _best(run_dir: Path) -> Path:
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    return best


def _fresh_copy(sweep: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    return copy


def test_sweep_evaluates_finished_runs_and_lists_broken_ones(sweep: Path, tmp_path: Path, capsys) -> None:
    root = _fresh_copy(sweep, tmp_path)
    damaged = _best(root / "1_arcface")
    damaged.write_bytes(damaged.read_bytes()[:200])  # truncated
    records = {p: p.read_bytes() for p in root.glob("*/metrics.json")}

    assert evaluate.main([str(root)]) == 1  # one finished run could not be evaluated
    out = capsys.readouterr()
    assert "1_arcface" in out.err and "damaged or truncated" in out.err
    error_lines = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and damaged.name in error_lines[0]  # one line, naming the file
    assert "skipped" in out.out and "3_failed: training status is failed" in out.out
    assert "2 run(s) evaluated, 1 skipped, 1 could not be evaluated" in out.out

    for name in ("0_softmax", "2_triplet"):  # evaluated from the best checkpoint: the same figures
        record = json.loads((root / name / "metrics.json").read_text())
        evaluation = json.loads((root / name / EVALUATION_NAME).read_text())
        assert evaluation["status"] == "finished" and evaluation["best_checkpoint"] is True
        assert evaluation["checkpoint"] == f"checkpoints/{_best(root / name).name}"
        assert evaluation["test_acc"] == pytest.approx(record["test_acc"], abs=1e-7)
        assert evaluation["test_confusion"] == record["test_confusion"]
        assert evaluation["retrieval"] == pytest.approx(record["retrieval"])
        assert set(evaluation["retrieval"]) == {"precision_at_1", "r_precision", "map_at_r", "nmi", "ami"}
        assert evaluation["geometry"]["max_intra_deg"] == pytest.approx(record["geometry"]["max_intra_deg"])
    triplet = json.loads((root / "2_triplet" / EVALUATION_NAME).read_text())
    assert "test_acc_leaky" not in triplet  # softmax_weight=0: no audit figure
    assert set(triplet["open_set"]["retrieval"]) == {"precision_at_1", "r_precision", "map_at_r", "nmi", "ami"}
    assert not (root / "1_arcface" / EVALUATION_NAME).exists()
    assert not (root / "3_failed" / EVALUATION_NAME).exists()
    assert {p: p.read_bytes() for p in root.glob("*/metrics.json")} == records  # history untouched
    used = {run.folder.name: run for run in report.load_runs([root])}  # the report takes the new figures
    assert used["0_softmax"].evaluated and used["2_triplet"].evaluated and not used["1_arcface"].evaluated


def test_a_checkpoint_path_evaluates_that_checkpoint(sweep: Path, tmp_path: Path, capsys) -> None:
    root = _fresh_copy(sweep, tmp_path)
    last = root / "0_softmax" / "checkpoints" / "last.ckpt"
    assert evaluate.main([str(last), "trainer.accelerator=cpu"]) == 0
    evaluation = json.loads((root / "0_softmax" / "evaluation_last.json").read_text())
    assert evaluation["best_checkpoint"] is False and evaluation["checkpoint"] == "checkpoints/last.ckpt"
    assert evaluation["overrides"] == ["trainer.accelerator=cpu"]
    assert not (root / "0_softmax" / EVALUATION_NAME).exists()  # the report reads only the best one's


def test_auto_precision_is_what_training_resolved_it_to(sweep: Path, tmp_path: Path) -> None:
    # Every run of the default config says trainer.precision=auto; Lightning itself rejects "auto".
    root = _fresh_copy(sweep, tmp_path)
    assert evaluate.main([str(root / "0_softmax"), "trainer.precision=auto"]) == 0
    evaluation = json.loads((root / "0_softmax" / EVALUATION_NAME).read_text())
    assert evaluation["precision"] == "32-true"  # the run's record: what its own test used
    assert evaluation_precision({"precision": "auto"}, {"precision": "bf16-mixed"}) == "bf16-mixed"
    assert evaluation_precision({"precision": "16-mixed"}, {"precision": "bf16-mixed"}) == "16-mixed"
    fresh = evaluation_precision({"precision": "auto", "accelerator": "cpu"}, {})
    assert fresh == resolve_precision("auto", "cpu").precision


def test_user_mistakes_are_one_line(sweep: Path, tmp_path: Path, capsys) -> None:
    assert evaluate.main([str(sweep / "0_softmax"), "trainer.acelerator=cpu"]) == 1
    err = capsys.readouterr().err
    assert "override 'trainer.acelerator=cpu' is invalid: trainer.acelerator is not a key of" in err
    assert evaluate.main([str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().out
    assert evaluate.main([str(tmp_path)]) == 1
    assert "no run folder below it" in capsys.readouterr().out


def test_an_old_run_folder_config_builds_with_moved_modules(tmp_path: Path) -> None:
    """config_resolved.yaml written before src/training/ existed names src.schedules.* and
    src.checkpointing.*: src.evaluate reads those as the components' current paths."""
    from hydra.utils import instantiate

    from src.training.evaluation import load_config

    old = (REPO / "experiments" / "study" / "runs" / "softmax_seed0" / "config_resolved.yaml").read_text()
    assert "src.schedules.constant" in old  # written by the code of that time
    (tmp_path / "config_resolved.yaml").write_text(old)
    cfg = load_config(tmp_path)
    assert cfg.scheduler._target_ == "src.training.schedules.constant"
    assert cfg.checkpoint_io._target_ == "src.training.checkpointing.AtomicCheckpointIO"
    assert callable(instantiate(cfg.scheduler)) and instantiate(cfg.checkpoint_io) is not None


def test_evaluation_records_its_image_count_beside_the_runs_own(synthetic_root: Path, tmp_path: Path,
                                                                capsys) -> None:
    """Issue 27.8: the run's own test cut to one batch (64 of the 120 test images) by
    trainer.limit_test_batches; the evaluation scores all 120 and says so, and the report shows its
    figure labelled with its count, the run's own figure kept beside it in runs.csv."""
    folder = tmp_path / "limited"
    cfg = compose_config([f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.limit_test_batches=1"],
                         output_dir=folder)
    run(cfg, folder)
    record = json.loads((folder / "metrics.json").read_text())
    assert sum(map(sum, record["test_confusion"])) == 64 == record["test_images"]  # what the run's own test scored

    assert evaluate.main([str(folder)]) == 0
    assert "on 120 test images, the run's own test" in capsys.readouterr().out
    evaluation = json.loads((folder / EVALUATION_NAME).read_text())
    assert (evaluation["test_images"], evaluation["training_test_images"]) == (120, 64)
    assert evaluation["training_limit_test_batches"] == 1 and sum(map(sum, evaluation["test_confusion"])) == 120

    out = tmp_path / "report"
    assert report.main([str(folder), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "1 run(s) from `evaluation.json` (the best checkpoint re-tested) on 120 test images" in text
    assert "the run's own test had scored 64 images" in text
    with (out / "runs.csv").open() as f:
        (row,) = csv.DictReader(f)
    assert (row["test_source"], row["test_images"], row["training_test_images"]) == ("evaluation.json", "120", "64")
    assert float(row["test_acc"]) == pytest.approx(evaluation["test_acc"])
    assert float(row["training_test_acc"]) == pytest.approx(record["test_acc"])


def test_a_read_only_run_is_read_and_never_written(sweep: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 27: a finished run on a read-only mount is reported as finished (with --out elsewhere)
    and refused by src.evaluate in one line before anything is computed; its files stay as they were."""
    from tests.reliability.read_only import read_only

    folder = tmp_path / "run"
    shutil.copytree(sweep / "0_softmax", folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    with read_only(folder, monkeypatch):
        assert evaluate.main([str(folder)]) == 1
        out = capsys.readouterr()
        errors = [line for line in out.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"{folder / EVALUATION_NAME} cannot be written" in errors[0], out.err
        assert "1 could not be evaluated" in out.out and "skipped " not in out.out
        assert report.main([str(folder), "--out", str(tmp_path / "report")]) == 0
        assert "(1 run(s) used, 0 listed as not used)" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted(before)  # no new file either
