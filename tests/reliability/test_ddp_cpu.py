"""DDP on the CPU (2 processes, gloo), for real, in a subprocess. The batches module
splits evaluation data per rank without padding and torchmetrics synchronises, so the test
confusion matrix counts every test image exactly once; the run record is complete."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.reliability.helpers import QUICK, finish, record, start, train_command


@pytest.mark.slow  # real DDP worker processes
def test_two_process_ddp_counts_each_test_image_once(synthetic_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ddp"
    cmd = train_command(f"data.root={synthetic_root}", *QUICK, "trainer=ddp_cpu", "trainer.max_epochs=2",
                        f"hydra.run.dir={folder}")  # fmt: skip
    code, out, err = finish(start(cmd), timeout=600)
    assert code == 0, err[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in out + err  # two processes really ran
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


def test_spawned_workers_get_their_own_metric_states() -> None:
    """Under spawn every tensor reaches the workers in shared memory; Lightning copies parameters
    and buffers only. Metric states left shared made each rank count every rank's images (a
    confusion matrix summing to world size x the test set); the strategy gives each its own."""
    from torchmetrics.classification import MulticlassConfusionMatrix

    from src.training.distributed import MultiprocessDDPStrategy, _unshare_metric_states

    module = torch.nn.Module()
    module.confusion = MulticlassConfusionMatrix(3)
    module.confusion.confmat.share_memory_()
    shared = module.confusion.confmat
    _unshare_metric_states(module)
    assert not module.confusion.confmat.is_shared() and module.confusion.confmat is not shared
    module.confusion.update(torch.tensor([0, 1]), torch.tensor([0, 2]))
    assert int(shared.sum()) == 0 and int(module.confusion.confmat.sum()) == 2
    assert MultiprocessDDPStrategy(start_method="spawn")._start_method == "spawn"


def test_multi_gpu_preset_composes() -> None:
    from src.errors import ConfigError
    from src.training.validate import check_config
    from tests.conftest import compose_config

    cfg = compose_config(["trainer=ddp", "data.root=/nonexistent"])
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == "auto"
    if not torch.cuda.is_available():  # a CPU-only machine is told so before anything starts
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            check_config(cfg)


def test_every_stage_result_comes_back_from_the_workers_unless_declared_rank_local() -> None:
    """The module's StageResults travel from a DDP worker to the main process through the strategy's
    own payload: a field added to StageResults arrives, or is marked rank-local on purpose."""
    from dataclasses import fields
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn

    from src.training.distributed import _ResultsLauncher
    from src.training.model import RANK_LOCAL, StageResults

    sent = StageResults()
    for i, f in enumerate(fields(sent)):  # a value for every field, different from its default
        setattr(sent, f.name, torch.full((2,), i) if getattr(sent, f.name) is None else [torch.full((2,), i)])

    def trainer(results: StageResults) -> SimpleNamespace:
        return SimpleNamespace(callback_metrics={}, callbacks=[], lightning_module=SimpleNamespace(results=results),
                               datamodule=None, state=SimpleNamespace(fn=TrainerFn.TESTING))

    launcher = _ResultsLauncher.__new__(_ResultsLauncher)  # only its result hand-over is exercised
    received = StageResults()
    launcher.update_main_process_results(trainer(received), launcher.get_extra_results(trainer(sent)))

    def same(a: object, b: object) -> bool:
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)

    for f in fields(StageResults):
        value = getattr(received, f.name)
        if f.metadata.get(RANK_LOCAL):
            assert not value, f"StageResults.{f.name} is rank-local yet came back"
        else:
            assert same(value, getattr(sent, f.name)), f"StageResults.{f.name} is not sent back from DDP workers"
