"""Issue #6.6: DDP on the CPU (2 processes, gloo), for real, in a subprocess. The batches module
splits evaluation data per rank without padding and torchmetrics synchronises, so the test
confusion matrix counts every test image exactly once; the run record is complete."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.reliability.helpers import QUICK, finish, record, start, train_command


def test_two_process_ddp_counts_each_test_image_once(synthetic_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ddp"
    code, _, err = finish(start(train_command(f"data.root={synthetic_root}", *QUICK, "trainer=ddp_cpu",
                                              "trainer.max_epochs=2", f"hydra.run.dir={folder}")), timeout=600)  # fmt: skip
    assert code == 0, err[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in err  # two processes really ran
    rec = record(folder)
    assert rec["status"] == "finished"
    confusion = torch.tensor(rec["test_confusion"])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == 120  # the synthetic test set, once
    assert abs(confusion.trace().item() / 120 - rec["test_acc"]) < 1e-6
    # Results of the worker processes reach the record: epochs, steps, history, best score.
    assert rec["epochs"] == 2 and rec["global_step"] == 4  # 2 epochs x limit_train_batches=2
    assert len(rec["history"]) == 2 and rec["val_acc_best"] == max(r["val/acc"] for r in rec["history"])
    assert Path(rec["best_checkpoint"]).exists()
    assert list(folder.glob(".hydra/config.yaml")) and len(list(folder.parent.iterdir())) == 1  # one run folder
