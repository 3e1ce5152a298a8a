"""Monotone targets, identities between losses, and the SphereFace lambda schedule."""

from __future__ import annotations

import math

import pytest
import torch

from src.losses.arcface import ArcFace
from src.losses.center import CenterLoss
from src.losses.combined import CombinedMargin
from src.losses.cosface import CosFace
from src.losses.modified_softmax import ModifiedSoftmax
from src.losses.normface import NormFace
from src.losses.sphereface import SphereFace
from src.losses.sphereface_plus import SphereFacePlus


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


def _same_weights(a, b) -> None:
    with torch.no_grad():
        b.weight.copy_(a.weight)


def test_sphereface_m1_lambda0_equals_the_modified_softmax_head() -> None:
    torch.manual_seed(0)
    sphere = SphereFace(6, 5, m=1, anneal=False, lambda_min=0.0).double()
    plain = ModifiedSoftmax(6, 5).double()
    _same_weights(sphere, plain)
    x = torch.randn(9, 6, dtype=torch.float64) * 2
    labels = torch.randint(0, 5, (9,))
    torch.testing.assert_close(sphere(x, labels), plain(x, labels))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ArcFace(6, 5, m=0.0, s=7.0),
        lambda: ArcFace(6, 5, m=0.0, s=7.0, convention="fallback"),
        lambda: CosFace(6, 5, m=0.0, s=7.0),
        lambda: CombinedMargin(6, 5, m1=1.0, m2=0.0, m3=0.0, s=7.0),
    ],
)
def test_zero_margin_is_normalized_softmax(make) -> None:
    torch.manual_seed(0)
    head = make().double()
    norm = NormFace(6, 5, s=7.0).double()
    _same_weights(head, norm)
    x = torch.randn(9, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (9,))
    torch.testing.assert_close(head.training_logits(x, labels), norm.training_logits(x, labels), atol=1e-5, rtol=0)
    torch.testing.assert_close(head(x, labels), norm(x, labels), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("combined", "other"),
    [
        (CombinedMargin(6, 5, m1=1.0, m2=0.5, m3=0.0, s=9.0), ArcFace(6, 5, m=0.5, s=9.0)),
        (CombinedMargin(6, 5, m1=1.0, m2=3.0, m3=0.0, s=9.0), ArcFace(6, 5, m=3.0, s=9.0)),
        (CombinedMargin(6, 5, m1=1.0, m2=0.0, m3=0.35, s=9.0), CosFace(6, 5, m=0.35, s=9.0)),
        (
            CombinedMargin(6, 5, m1=4.0, m2=0.0, m3=0.0, s=9.0),
            SphereFace(6, 5, m=4, anneal=False, lambda_min=0.0, normalize_features=True, s=9.0),
        ),
    ],
)
def test_combined_margin_contains_the_others(combined, other) -> None:
    torch.manual_seed(0)
    combined, other = combined.double(), other.double()
    _same_weights(other, combined)
    x = torch.randn(9, 6, dtype=torch.float64)
    labels = torch.randint(0, 5, (9,))
    torch.testing.assert_close(combined.training_logits(x, labels), other.training_logits(x, labels), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("m1", "m2"), [(1.0, 0.3), (0.5, 0.0), (1.5, 2.0), (3.0, 4.0)])
def test_combined_target_non_increasing(m1: float, m2: float) -> None:
    v = _target_logit_over_angles(CombinedMargin(2, 3, m1=m1, m2=m2, m3=0.2))
    assert (v[1:] - v[:-1] <= 1e-9).all()
    assert v[0] > v[-1]


def test_center_loss_centers_are_learned_and_saved() -> None:
    head = CenterLoss(4, 3, lambda_c=1.0)
    assert any(p is head.centers for p in head.parameters())
    assert "centers" in head.state_dict()
    x = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    head(x, labels).backward()
    # d/dc_k of (1/2) mean_i |x_i - c_yi|^2 = -(1/N) sum_{i: y_i = k} (x_i - c_k), c = 0 at init
    want = torch.stack([-x[labels == k].sum(0) / 6 for k in range(3)])
    torch.testing.assert_close(head.centers.grad, want)


def test_sphereface_plus_energy_falls_when_weights_spread_and_step_counts_once() -> None:
    head = SphereFacePlus(3, 4, alpha=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.9, 0.1, 0.1]]))
    bunched = head.hyperspherical_energy().item()
    with torch.no_grad():  # regular tetrahedron: the minimum-energy configuration of 4 points
        head.weight.copy_(torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]))
    spread = head.hyperspherical_energy().item()
    assert spread == pytest.approx(1 / (8 / 3) ** 0.5)
    assert spread < bunched
    head.train()
    head(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    assert int(head.step) == 1


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
