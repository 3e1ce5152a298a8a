"""End-to-end tiny runs: every loss trains, selects on validation and tests; every loss fits every backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.losses.config import loss_config
from src.training.pipeline import build, run
from tests.conftest import CONF_DIR

LOSSES = sorted(p.stem for p in (CONF_DIR / "loss").glob("*.yaml"))
BACKBONES = sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml"))


# The whole run per loss on 2-D embeddings (the backbone whose geometry is hardest on a margin,
# cosines near +-1, and whose embeddings are plotted) in make test; on the study's seed_cnn too in
# the slow group. That any loss fits any backbone is the quick check below.
@pytest.mark.parametrize("backbone", ["small2d", pytest.param("seed_cnn", marks=pytest.mark.slow)])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_and_tests(tiny_config, tmp_path: Path, loss: str, backbone: str) -> None:
    cfg = tiny_config(f"loss={loss}", f"backbone={backbone}", "trainer.max_epochs=1", "trainer.limit_train_batches=3")
    metrics = run(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "finished"
    assert 0.0 <= metrics["test_acc"] <= 1.0 and 0.0 <= metrics["val_acc_best"] <= 1.0
    confusion = torch.tensor(record["test_confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 120  # every test image counted once
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.fixture(scope="module")
def loss_configs() -> dict[str, DictConfig]:
    return {loss: loss_config(loss) for loss in LOSSES}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_loss_fits_every_backbone(tiny_config, loss_configs: dict[str, DictConfig], backbone: str) -> None:
    """Any backbone works with any loss: each head is built from its config for the backbone's
    embedding size, as a run builds it, takes a training step with finite gradients in the head
    and the backbone, and predicts label-free, one class per image."""
    cfg = tiny_config(f"backbone={backbone}")
    images, labels = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 10
    for loss, loss_cfg in loss_configs.items():
        backbone_module = instantiate(cfg.backbone).train()
        head = instantiate(loss_cfg, embedding_dim=cfg.model.embedding_dim, num_classes=10).train()
        value = head(backbone_module(images), labels)
        value.backward()
        assert torch.isfinite(value), (loss, backbone)
        grads = [p.grad for m in (backbone_module, head) for p in m.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), (loss, backbone)
        with torch.no_grad():
            predicted = head.eval().predict(backbone_module.eval()(images))
        assert predicted.shape == (8,) and int(predicted.min()) >= 0 and int(predicted.max()) < 10, (loss, backbone)


def test_default_run_learns_synthetic_data(tiny_config, tmp_path: Path) -> None:
    metrics = run(tiny_config("trainer.max_epochs=3"), tmp_path / "run")
    assert metrics["val_acc_best"] > 0.5 and metrics["test_acc"] > 0.5  # chance is 0.1
    assert metrics["epochs"] == 3 and len(metrics["history"]) == 3


def test_test_uses_best_validation_checkpoint(tiny_config, tmp_path: Path) -> None:
    metrics = run(tiny_config("trainer.max_epochs=2"), tmp_path / "run")
    best = Path(metrics["best_checkpoint"])
    assert best.exists() and best.name.startswith("best-")
    best_epoch = max(metrics["history"], key=lambda row: row["val/acc"])["epoch"]
    assert f"epoch{best_epoch:03d}" in best.name


def test_head_gets_backbone_embedding_size_by_interpolation(tiny_config) -> None:
    cfg = tiny_config("backbone=small3d", "loss=arcface")
    _, model = build(cfg)
    assert model.head.weight.shape == (10, 3)
    assert model.backbone(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


def test_run_record_marks_failure(tiny_config, tmp_path: Path) -> None:
    from src.errors import DatasetError

    corrupt = tmp_path / "corrupt"  # passes the config checks; fails once the data is read
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        (corrupt / name).write_bytes(b"not an IDX file")
    cfg = tiny_config(f"data.root={corrupt}", "data.download=false")
    with pytest.raises(DatasetError):
        run(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["reason"].startswith("DatasetError")
