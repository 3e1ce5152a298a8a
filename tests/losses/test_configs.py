"""Every conf/loss yaml builds a head through Hydra; scores are label-free; basic numerics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from src.losses.base import LossHead
from src.losses.config import loss_config

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"
YAMLS = sorted(CONF.glob("*.yaml"))
D, C = 8, 5


def _build(path: Path, dim: int = D, classes: int = C) -> LossHead:
    return instantiate(loss_config(path.stem), embedding_dim=dim, num_classes=classes)


def test_the_core_yamls_exist() -> None:
    names = {p.stem for p in YAMLS}
    assert {"softmax", "sphereface", "arcface", "cosface"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_yaml_instantiates_with_weight_shape(path: Path) -> None:
    cfg = loss_config(path.stem)
    assert "name" not in cfg and str(cfg._target_).startswith("src.losses.")
    head = _build(path)
    assert isinstance(head, LossHead)
    assert head.weight.shape == (C * head.sub_centers, D)  # K rows per class (1 unless sub-centres)
    assert any(p is head.weight for p in head.parameters())
    assert "weight" in head.state_dict()


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_scores_and_predictions_ignore_labels(path: Path) -> None:
    torch.manual_seed(0)
    head = _build(path)
    x = torch.randn(32, D)
    labels = torch.randint(0, C, (32,))
    head.train()
    for _ in range(3):  # let stateful heads (lambda step, running centers) move first
        head(x, labels)
    head.eval()
    s1 = head.scores(x)
    assert s1.shape == (32, C)
    pred = head.predict(x)
    # Another labelling, and a training step's loss with it, must not change eval predictions.
    head(x, (labels + 1) % C)
    torch.testing.assert_close(head.scores(x), s1)
    assert torch.equal(head.predict(x), pred)


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_finite_at_plus_minus_one_2d_and_zero_embedding(path: Path) -> None:
    torch.manual_seed(0)
    head = _build(path, dim=2, classes=3).train()
    with torch.no_grad():
        # Every sub-centre of a class on its direction, so cos t_y = +-1 holds for the class too.
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).repeat_interleave(head.sub_centers, 0))
    # cos t_y = +1, cos t_y = -1 (exactly, in float32), a zero embedding, and a generic one.
    x = torch.tensor([[3.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [0.5, -1.5], [0.0, 4.0], [0.0, -1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2, 1, 1])
    loss = head(x, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()
    for p in head.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    assert torch.isfinite(head.scores(x)).all()


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_bf16_autocast_on_cpu(path: Path) -> None:
    torch.manual_seed(0)
    head = _build(path).train()
    encoder = torch.nn.Linear(6, D)
    x = torch.randn(16, 6)
    labels = torch.randint(0, C, (16,))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        emb = encoder(x)
        assert emb.dtype == torch.bfloat16
        loss = head(emb, labels)
        logits = head.training_logits(emb, labels)
        scores = head.scores(emb)
    assert logits.dtype == torch.float32 and scores.dtype == torch.float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(encoder.weight.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())
