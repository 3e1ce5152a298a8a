"""Monotone targets, identities between losses, and the SphereFace lambda schedule."""

from __future__ import annotations

import math

import pytest
import torch

from src.losses.arcface import ArcFace
from src.losses.cosface import CosFace
from src.losses.sphereface import SphereFace


def _target_logit_over_angles(head, n: int = 1801) -> torch.Tensor:
    """Target logit of class 0 for unit 2-D embeddings at angles 0..pi from w_0 = (1, 0)."""
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:, 0] = 1.0
        head.weight[1] = torch.tensor([0.0, 1.0])  # any other class; only the target is read
    t = torch.linspace(0.0, math.pi, n, dtype=torch.float64)
    x = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    labels = torch.zeros(n, dtype=torch.long)
    return head.double().training_logits(x, labels)[:, 0].detach()


@pytest.mark.parametrize("m", range(1, 7))
@pytest.mark.parametrize("lambda_min", [0.0, 5.0])
def test_sphereface_target_non_increasing(m: int, lambda_min: float) -> None:
    v = _target_logit_over_angles(SphereFace(2, 3, m=m, anneal=False, lambda_min=lambda_min))
    assert (v[1:] - v[:-1] <= 1e-9).all()
    assert v[0] > v[-1]


@pytest.mark.parametrize("m", [0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
def test_arcface_target_non_increasing_default_convention(m: float) -> None:
    head = ArcFace(2, 3, m=m)
    assert head.convention == "monotone"
    v = _target_logit_over_angles(head)
    assert (v[1:] - v[:-1] <= 1e-9).all()
    assert v[0] > v[-1]


def test_arcface_fallback_is_not_monotone_for_large_m() -> None:
    """Documented behaviour: the fallback branch is cos t - m sin m, for m = 4 a bonus that rises
    above the m = 0 logit; the default convention exists because of this."""
    v = _target_logit_over_angles(ArcFace(2, 3, m=4.0, s=1.0, convention="fallback"))
    t = torch.linspace(0.0, math.pi, v.numel(), dtype=torch.float64)
    torch.testing.assert_close(v, torch.cos(t) - 4.0 * math.sin(4.0))


def test_sphereface_m1_lambda0_is_modified_softmax() -> None:
    torch.manual_seed(0)
    head = SphereFace(6, 5, m=1, anneal=False, lambda_min=0.0).double()
    x = torch.randn(9, 6, dtype=torch.float64) * 3
    labels = torch.randint(0, 5, (9,))
    plain = x @ torch.nn.functional.normalize(head.weight, dim=1).t()  # |x| cos t_j
    torch.testing.assert_close(head.training_logits(x, labels), plain)
    torch.testing.assert_close(head(x, labels), torch.nn.functional.cross_entropy(plain, labels))


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
def test_zero_margin_is_normalized_softmax(cls) -> None:
    torch.manual_seed(0)
    head = cls(6, 5, m=0.0, s=7.0).double()
    x = torch.randn(9, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (9,))
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).t()
    torch.testing.assert_close(head.training_logits(x, labels), 7.0 * cos, atol=1e-6, rtol=0)


def _lam(step: int, base=1000.0, gamma=0.12, power=1.0, lam_min=5.0) -> float:
    return max(lam_min, base * (1.0 + gamma * step) ** (-power))


def _train_steps(head: SphereFace, n: int) -> None:
    x = torch.randn(4, head.embedding_dim)
    labels = torch.tensor([0, 1, 0, 1])
    for _ in range(n):
        head(x, labels)


def test_lambda_schedule_follows_formula() -> None:
    head = SphereFace(3, 2, m=4, lambda_base=800.0, lambda_gamma=2.0, lambda_power=1.5, lambda_min=2.0)
    head.train()
    seen = []
    for step in range(60):
        assert int(head.step) == step
        seen.append(head.current_lambda())
        _train_steps(head, 1)
    want = [_lam(s, 800.0, 2.0, 1.5, 2.0) for s in range(60)]
    assert seen == pytest.approx(want, rel=1e-12)
    assert seen[0] == 800.0 and seen[-1] == 2.0  # reaches the floor


def test_lambda_used_by_the_forward_is_the_current_one() -> None:
    head = SphereFace(3, 2, m=2).train().double()
    _train_steps(head, 7)
    x = torch.randn(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1])
    lam = _lam(7)
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(head.weight, dim=1).t()
    cy = cos.gather(1, labels.view(-1, 1)).squeeze(1)
    t = torch.acos(cy)
    k = torch.floor(2 * t / math.pi)
    psi = (-1) ** k * torch.cos(2 * t) - 2 * k
    want = x.norm(dim=1) * (lam * cy + psi) / (1 + lam)
    got = head.training_logits(x, labels).gather(1, labels.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(got, want)


def test_eval_forward_and_no_anneal_do_not_advance_or_change_lambda() -> None:
    head = SphereFace(3, 2).eval()
    _train_steps(head, 5)
    assert int(head.step) == 0
    fixed = SphereFace(3, 2, anneal=False, lambda_min=0.0).train()
    _train_steps(fixed, 5)
    assert fixed.current_lambda() == 0.0


def test_lambda_schedule_resumes_from_state_dict() -> None:
    head = SphereFace(3, 2).train()
    _train_steps(head, 25)
    state = head.state_dict()
    assert "step" in state and state["step"].dtype == torch.int64
    fresh = SphereFace(3, 2)
    assert fresh.current_lambda() == _lam(0)
    fresh.load_state_dict(state)
    assert int(fresh.step) == 25
    assert fresh.current_lambda() == pytest.approx(_lam(25))
    fresh.train()
    _train_steps(fresh, 3)
    assert fresh.current_lambda() == pytest.approx(_lam(28))
