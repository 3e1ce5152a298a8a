"""Issue 15's numerics: targets that fall all the way to t = 0 and t = pi, and gradients that stay
finite in half precision for a zero embedding."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from src.losses.arcface import ArcFace
from src.losses.config import loss_config
from src.losses.margin import SIN_FLOOR, arc_margin_cos, combined_margin_cos


def _fine_angles() -> torch.Tensor:
    """[0, pi] in float64: steps of 1e-6 rad within 1e-3 rad of either end (where a floor under
    sin t would show), a coarser grid in between."""
    ends = torch.arange(0, 1001, dtype=torch.float64) * 1e-6
    middle = torch.linspace(1e-3, math.pi - 1e-3, 20001, dtype=torch.float64)[1:-1]
    return torch.cat([ends, middle, (math.pi - ends).flip(0)])


ANGLES = _fine_angles()


def _strictly_decreasing(values: torch.Tensor) -> None:
    steps = values[1:] - values[:-1]
    worst = int(steps.argmax())
    assert (steps < 0).all(), f"rises by {float(steps[worst]):.3g} at t={float(ANGLES[worst]):.9f}"


@pytest.mark.parametrize("m", [0.1, 0.5, 1.0, 2.0, 3.0, math.pi - 1e-3, 4.0, 6.0])
def test_arcface_target_strictly_decreasing_to_both_ends(m: float) -> None:
    _strictly_decreasing(arc_margin_cos(torch.cos(ANGLES), m))


@pytest.mark.parametrize(("m1", "m2"), [(1.0, 0.3), (1.35, 0.25), (2.0, 1.0)])
def test_combined_target_strictly_decreasing_to_both_ends(m1: float, m2: float) -> None:
    _strictly_decreasing(combined_margin_cos(torch.cos(ANGLES), m1, m2))


@pytest.mark.parametrize("m", [0.5, 2.0, 4.0])
def test_arcface_head_logit_falls_near_the_ends(m: float) -> None:
    """The whole head, not only the helper: target logit of a unit 2-D embedding at angle t."""
    head = ArcFace(2, 3, m=m).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    x = torch.stack([torch.cos(ANGLES), torch.sin(ANGLES)], dim=1)
    logits = head.training_logits(x, torch.zeros(len(x), dtype=torch.long))[:, 0]
    _strictly_decreasing(logits.detach())


@pytest.mark.parametrize("target", [lambda c: arc_margin_cos(c, 2.0), lambda c: arc_margin_cos(c, 0.5),
                                    lambda c: combined_margin_cos(c, 1.35, 0.25)])
def test_gradients_finite_bounded_and_never_wrong_signed(target) -> None:
    """d target / d cos t >= 0 everywhere (the target never rewards a larger angle), finite and
    bounded by the floor, and equal to the analytic derivative away from the ends."""
    c = torch.cos(ANGLES).requires_grad_(True)
    (grad,) = torch.autograd.grad(target(c).sum(), c)
    assert torch.isfinite(grad).all()
    assert (grad >= 0).all()
    assert float(grad.max()) <= 3.0 / SIN_FLOOR
    inner = (ANGLES > 0.05) & (math.pi - 0.05 > ANGLES)
    c_in = torch.cos(ANGLES[inner]).requires_grad_(True)
    (g_in,) = torch.autograd.grad(target(c_in).sum(), c_in)
    numeric = (target(c_in.detach() + 1e-7) - target(c_in.detach() - 1e-7)) / 2e-7
    torch.testing.assert_close(g_in, numeric, rtol=1e-5, atol=1e-5)


def _head(name: str, **overrides: object) -> torch.nn.Module:
    cfg = loss_config(name)
    for key, value in overrides.items():
        cfg[key] = value
    return instantiate(cfg, embedding_dim=8, num_classes=4)


HEADS = ["softmax", "modified_softmax", "normface", "sphereface", "sphereface_norm", "sphereface_plus", "arcface",
         "cosface", "combined", "center", "contrastive", "triplet"]


@pytest.mark.parametrize("name", HEADS)
def test_zero_and_tiny_embeddings_keep_fp16_gradients_finite(name: str) -> None:
    """Under 16-mixed the backbone's embeddings are float16 and their gradient is cast back to
    float16 (largest finite value 65504). A zero row and rows of the smallest float16 sizes are
    in the batch; every gradient must stay finite (the loss unscaled: GradScaler's own overflow
    check handles its scale)."""
    torch.manual_seed(0)
    head = _head(name, s=64.0) if name in ("normface", "arcface", "cosface", "combined", "sphereface_norm") \
        else _head(name)
    emb32 = torch.randn(8, 8)
    emb32[0] = 0.0
    emb32[1] = 6e-8  # float16's smallest subnormal
    emb32[2] = 1e-4
    emb = emb32.half().requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    with torch.autocast(device_type="cpu", dtype=torch.float16):
        loss = head(emb, labels)
    loss.backward()
    assert emb.grad is not None and emb.grad.dtype == torch.float16
    assert torch.isfinite(emb.grad).all(), emb.grad[:3]
    for param in head.parameters():
        assert param.grad is None or torch.isfinite(param.grad).all()
