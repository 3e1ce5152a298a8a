"""Proofs for the descendants L-Softmax, SphereFace-R and SphereFace2 (docs/losses.md, "The
descendants"): values against the float64 per-sample references of reference_descendants_sphere,
gradients (gradcheck, or central differences of the frozen-margin reference where the margin is
detached), identities with SphereFace / the combined margin, pytorch-metric-learning as an
independent L-Softmax oracle, numerics at cos = +-1 and zero / bf16 embeddings, the known failure
modes of the public code, and one-line errors for bad keys."""

from __future__ import annotations

import math

import pytest
import torch
from loss_reference import psi, sphereface_lambda
from reference_descendants_sphere import (
    lsoftmax_loss,
    numerical_grad,
    opensphere_bias_formula,
    sphereface2_adjustments,
    sphereface2_bias_by_bisection,
    sphereface2_loss,
    sphereface2_with_adjusted,
    spherefacer_deltas,
    spherefacer_loss,
    spherefacer_with_deltas,
)

from src.losses.combined import CombinedMargin
from src.losses.lsoftmax import LSoftmax
from src.losses.sphereface import SphereFace
from src.losses.sphereface2 import SphereFace2, initial_bias, similarity_g
from src.losses.spherefacer import SphereFaceR

D, C, N = 5, 4, 7
LABELS = torch.tensor([0, 1, 2, 3, 1, 0, 2])


def _data(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g, dtype=torch.float64) * 2.0


def _w(head: torch.nn.Module) -> list[list[float]]:
    return head.weight.detach().tolist()


def _uneven_weights(head: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    """Rows of different lengths, so a missing or extra |w_j| shows in L-Softmax."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.mul_(0.5 + 2.0 * torch.rand(head.weight.shape[0], 1, generator=g, dtype=head.weight.dtype))
    return head


def _grad_x(head: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(head(x, labels), x)
    return grad


def _gradcheck(head: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, names=("weight",), **kw) -> bool:
    """gradcheck in the embedding and the named parameters, routed through functional_call."""
    params = [getattr(head, n).detach().clone().requires_grad_(True) for n in names]

    def loss(xx: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(head, dict(zip(names, ps, strict=True)), (xx, labels))

    return torch.autograd.gradcheck(loss, (x.clone().requires_grad_(True), *params), eps=1e-6, atol=1e-5,
                                    rtol=1e-4, **kw)


def _two_d_head(head: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    return head


# cos t_y = +1 and -1 exactly, a zero embedding, generic rows (as tests/losses/test_configs.py).
EDGE_X = [[3.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [0.5, -1.5], [0.0, 4.0], [0.0, -1.0]]
EDGE_Y = [0, 0, 1, 2, 1, 1]


def _assert_finite_everywhere(head: torch.nn.Module) -> None:
    head = _two_d_head(head).train()
    x = torch.tensor(EDGE_X, requires_grad=True)
    loss = head(x, torch.tensor(EDGE_Y))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())
    assert torch.isfinite(head.scores(x)).all()


def _assert_bf16_float32(head: torch.nn.Module) -> None:
    torch.manual_seed(0)
    encoder = torch.nn.Linear(6, D)
    x, labels = torch.randn(16, 6), torch.randint(0, C, (16,))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        emb = encoder(x)
        loss = head.train()(emb, labels)
        logits = head.training_logits(emb, labels)
        scores = head.scores(emb)
    assert emb.dtype == torch.bfloat16
    assert loss.dtype == logits.dtype == scores.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(encoder.weight.grad).all()


# =============================================================================================
# L-Softmax
# =============================================================================================


@pytest.mark.parametrize("m", range(1, 7))
@pytest.mark.parametrize("lam", [0.0, 0.5, 1000.0])
def test_lsoftmax_value_matches_reference(m: int, lam: float) -> None:
    torch.manual_seed(1)
    head = _uneven_weights(LSoftmax(D, C, m=m, anneal=False, lambda_min=lam).double()).eval()
    x = _data()
    got = head(x, LABELS)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(lsoftmax_loss(x.tolist(), _w(head), LABELS.tolist(), m, lam), rel=1e-9, abs=1e-9)


def test_lsoftmax_follows_the_annealing_schedule() -> None:
    """The default schedule (the authors' MNIST recipe) step by step: training forwards use the
    current step's lambda and advance it; eval forwards do not; the step is checkpointed."""
    torch.manual_seed(1)
    head = _uneven_weights(LSoftmax(D, C).double())
    x = _data()
    for step in range(3):
        lam = sphereface_lambda(step, 1000.0, 2.5e-5, 35.0, 0.0)
        assert head.current_lambda() == pytest.approx(lam, rel=1e-12)
        want = lsoftmax_loss(x.tolist(), _w(head), LABELS.tolist(), 4, lam)
        assert head.train()(x, LABELS).item() == pytest.approx(want, rel=1e-9)
    head.eval()(x, LABELS)
    assert int(head.step) == 3
    for step in (2_700, 8_727, 20_000):  # the figures docs/losses.md quotes
        assert head.lambda_at(step) == pytest.approx(sphereface_lambda(step, 1000.0, 2.5e-5, 35.0, 0.0))
    assert head.lambda_at(2_700) > 100 and head.lambda_at(8_727) == pytest.approx(1.0, abs=2e-3)
    assert head.lambda_at(20_000) < 1e-3
    restored = LSoftmax(D, C).double()
    restored.load_state_dict(head.state_dict())
    assert int(restored.step) == 3 and restored.current_lambda() == head.current_lambda()


@pytest.mark.parametrize(("m", "lam"), [(4, 0.0), (3, 0.5), (6, 2.0)])
def test_lsoftmax_gradcheck(m: int, lam: float) -> None:
    torch.manual_seed(2)
    head = _uneven_weights(LSoftmax(D, C, m=m, anneal=False, lambda_min=lam).double()).eval()
    assert _gradcheck(head, _data(3), LABELS)


@pytest.mark.parametrize("m", [1, 2, 4, 6])
def test_lsoftmax_on_unit_weights_and_features_is_spherefaces_psi(m: int) -> None:
    """|w_j| = |x| = 1 and lambda = 0: the logits are psi(t_y) and cos t_j, SphereFace's exactly;
    with unit weights only (any |x|) L-Softmax is SphereFace for every lambda."""
    torch.manual_seed(3)
    lsm = LSoftmax(D, C, m=m, anneal=False, lambda_min=0.0).double()
    with torch.no_grad():
        lsm.weight.div_(lsm.weight.norm(dim=1, keepdim=True))
    sph = SphereFace(D, C, m=m, anneal=False, lambda_min=0.0).double()
    sph.load_state_dict(lsm.state_dict())
    x = _data()
    unit_x = x / x.norm(dim=1, keepdim=True)
    torch.testing.assert_close(lsm.training_logits(unit_x, LABELS), sph.training_logits(unit_x, LABELS))
    cos_y = (unit_x * lsm.weight[LABELS]).sum(1).clamp(-1, 1)
    want = torch.tensor([psi(t, m) for t in torch.acos(cos_y).tolist()], dtype=torch.float64)
    torch.testing.assert_close(lsm.training_logits(unit_x, LABELS).gather(1, LABELS.view(-1, 1)).squeeze(1), want)
    for lam in (0.5, 5.0):
        a = LSoftmax(D, C, m=m, anneal=False, lambda_min=lam).double()
        b = SphereFace(D, C, m=m, anneal=False, lambda_min=lam).double()
        a.load_state_dict(lsm.state_dict())
        b.load_state_dict(lsm.state_dict())
        torch.testing.assert_close(a(x, LABELS), b(x, LABELS))


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_lsoftmax_matches_pytorch_metric_learning(m: int) -> None:
    """pytorch-metric-learning 2.9's ``LargeMarginSoftmaxLoss`` as an independent oracle.

    Where the conventions coincide it must agree to rounding: PML does *not* normalise the class
    weights (it takes cosines from normalised vectors and multiplies them back by |w_j| |x|, so
    its logits are w_j . x and |w_y||x| psi(t_y), as in the paper), and its psi is the binomial
    expansion of cos(m t) with k = floor(t m / pi) found without gradient. Differences, all
    switched off here: PML has no lambda annealing (ours with ``anneal: false, lambda_min: 0``),
    an extra ``scale`` factor (left at 1), stores W as (D, C) (we pass our weight transposed) and
    initialises it its own way (we copy ours in)."""
    from pytorch_metric_learning.losses import LargeMarginSoftmaxLoss

    torch.manual_seed(4)
    ours = _uneven_weights(LSoftmax(D, C, m=m, anneal=False, lambda_min=0.0).double()).eval()
    pml = LargeMarginSoftmaxLoss(num_classes=C, embedding_size=D, margin=m, scale=1)
    pml.W.data = ours.weight.detach().t().clone()
    x = _data(6)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = ours(xa, LABELS), pml(xb, LABELS)
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    a.backward()
    b.backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, pml.W.grad.t(), rtol=1e-9, atol=1e-12)


def test_lsoftmax_scores_are_the_plain_inner_products() -> None:
    """Label-free scores are w_j . x (the authors' test net is the layer without margin), so
    prediction is *not* the cosine argmax when the |w_j| differ."""
    head = LSoftmax(2, 2).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[0.5, 0.6], [-1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(head.scores(x), x @ head.weight.t())
    assert head.predict(x).tolist() == [0, 1]  # row 0: cos favours class 1, w . x class 0


def test_lsoftmax_without_annealing_starts_far_from_softmax() -> None:
    """Divergence without annealing (authors' issues #3, #10), part 1. At a random start the target
    angle is ~pi/2, where psi(pi/2) = -3 for m = 4: the pure L-Softmax loss is ~3 |w||x| per
    sample and its gradient several times softmax's, while the default schedule's first step
    (lambda = 1000) is the plain softmax to within 1%."""
    torch.manual_seed(7)
    x = torch.randn(64, 16, dtype=torch.float64) * 4.0
    labels = torch.randint(0, 10, (64,))
    annealed = LSoftmax(16, 10).double()
    pure = LSoftmax(16, 10, anneal=False, lambda_min=0.0).double()
    pure.load_state_dict(annealed.state_dict())
    softmax = torch.nn.functional.cross_entropy(x @ annealed.weight.t(), labels)
    assert annealed(x, labels).item() == pytest.approx(softmax.item(), rel=1e-2)
    assert pure(x, labels).item() > 3.0 * softmax.item()
    assert _grad_x(pure, x, labels).norm() > 2.0 * _grad_x(annealed, x, labels).norm()


@pytest.mark.parametrize("radius", [1.0, 0.01])
@pytest.mark.parametrize("lam", [0.0, 1000.0])
def test_lsoftmax_target_curvature_is_m_squared_over_the_norm(radius: float, lam: float) -> None:
    """Part 2, the mechanism. The target logit |w||x| psi(t) is homogeneous of degree 1 in x with
    angular frequency m, so across the angle its curvature is |w| (1 - m^2) / (|x| (1 + lambda)):
    -15 |w| / |x| for m = 4 and lambda = 0, unbounded as |x| shrinks (and softmax's w . x has
    none). A fixed step is stable only while lr |w| (m^2 - 1) / (|x| (1 + lambda)) < 2; lambda =
    1000 at the start divides it by 1001, which is how the default avoids the blow-up."""
    head = LSoftmax(2, 3, m=4, anneal=False, lambda_min=lam).double()
    _two_d_head(head)
    with torch.no_grad():
        head.weight[0] *= 2.0  # |w_y| = 2
    labels = torch.tensor([0])

    def target(x: torch.Tensor) -> torch.Tensor:
        return head.training_logits(x.view(1, 2), labels)[0, 0]

    hessian = torch.autograd.functional.hessian(target, torch.tensor([radius, 0.0], dtype=torch.float64))
    assert hessian[1, 1].item() == pytest.approx(2.0 * (1 - 16) / (radius * (1 + lam)), rel=1e-6)
    assert hessian[0, 0].item() == pytest.approx(0.0, abs=1e-6)  # radially linear


# =============================================================================================
# SphereFace-R
# =============================================================================================

SFR_CASES = [(mt, fn, m) for mt in ("v0", "v1", "v2") for fn in ("hard", "none", "soft") for m in (1.5, 2.7)]


def _sfr(mt: str, fn: str, m: float, detach: bool = True, s: float = 10.0) -> SphereFaceR:
    return SphereFaceR(D, C, m=m, s=s, margin_type=mt, feature_norm=fn, soft_weight=0.05, detach=detach).double()


@pytest.mark.parametrize(("mt", "fn", "m"), SFR_CASES)
def test_spherefacer_value_matches_reference(mt: str, fn: str, m: float) -> None:
    """The forward value is the same with and without the gradient detachment."""
    torch.manual_seed(1)
    x = _data()
    for detach in (True, False):
        head = _sfr(mt, fn, m, detach)
        want = spherefacer_loss(x.tolist(), _w(head), LABELS.tolist(), m, 10.0, mt, fn, 0.05)
        assert head(x, LABELS).item() == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("mt", "fn", "m"), SFR_CASES)
def test_spherefacer_gradient_is_that_of_the_frozen_margin(mt: str, fn: str, m: float) -> None:
    """Characteristic gradient detachment: the gradient is the central-difference gradient of the
    reference with the margin terms eta_j - cos t_j frozen at the current point."""
    torch.manual_seed(2)
    head = _sfr(mt, fn, m)
    x, w, y = _data(3), _w(head), LABELS.tolist()
    deltas = spherefacer_deltas(x.tolist(), w, y, m, mt)
    want = numerical_grad(lambda xx: spherefacer_with_deltas(xx, w, y, deltas, 10.0, fn, 0.05), x.tolist())
    torch.testing.assert_close(_grad_x(head, x, LABELS), torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mt", ["v0", "v1", "v2"])
@pytest.mark.parametrize("fn", ["hard", "none"])
def test_spherefacer_gradcheck_without_detachment(mt: str, fn: str) -> None:
    torch.manual_seed(2)
    assert _gradcheck(_sfr(mt, fn, 1.5, detach=False), _data(3), LABELS)


def test_spherefacer_detached_gradient_is_not_the_values_gradient() -> None:
    """The detachment is real: gradcheck of the default head fails (its gradient is not the
    derivative of its value), while the same head without it passes."""
    torch.manual_seed(2)
    assert not _gradcheck(_sfr("v0", "hard", 1.5), _data(3), LABELS, raise_exception=False)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_spherefacer_v0_forward_is_normalised_spherefaces(m: int) -> None:
    """v0 with hard normalisation and integer m: the forward value is SphereFace's with
    normalised features and lambda = 0 (psi = Phi(m t)); only the gradient differs."""
    torch.manual_seed(3)
    sfr = SphereFaceR(D, C, m=m, s=12.0, margin_type="v0").double()
    sph = SphereFace(D, C, m=m, anneal=False, lambda_min=0.0, normalize_features=True, s=12.0).double()
    sph.load_state_dict(sfr.state_dict(), strict=False)
    x = _data()
    torch.testing.assert_close(sfr(x, LABELS), sph(x, LABELS))
    assert not torch.allclose(_grad_x(sfr, x, LABELS), _grad_x(sph, x, LABELS))


def test_spherefacer_v0_real_m_is_the_combined_margins_value() -> None:
    torch.manual_seed(3)
    sfr = SphereFaceR(D, C, m=1.5, s=30.0).double()
    comb = CombinedMargin(D, C, m1=1.5, m2=0.0, m3=0.0, s=30.0).double()
    comb.load_state_dict(sfr.state_dict())
    torch.testing.assert_close(sfr(_data(), LABELS), comb(_data(), LABELS))


@pytest.mark.parametrize("mt", ["v0", "v1", "v2"])
def test_spherefacer_margin_types_share_the_boundary_m_t_y_equals_t_j(mt: str) -> None:
    """All three place the decision boundary at m t_y = t_j: a 2-D embedding at angle t_y from
    w_y and t_j = m t_y from w_j gets equal target and non-target logits."""
    m, t_y = 1.5, 0.6
    head = SphereFaceR(2, 2, m=m, s=7.0, margin_type=mt).double()
    with torch.no_grad():  # w_y at angle 0, w_j at angle t_y + m t_y, so x (angle t_y) is m t_y from w_j
        head.weight.copy_(torch.tensor([[1.0, 0.0], [math.cos(t_y + m * t_y), math.sin(t_y + m * t_y)]],
                                        dtype=torch.float64))
    x = torch.tensor([[math.cos(t_y), math.sin(t_y)]], dtype=torch.float64)
    logits = head.training_logits(x, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(logits[0, 1].item(), abs=1e-12)


def test_spherefacer_v1_is_flat_past_pi_over_m_but_cgd_still_pulls() -> None:
    """v1 clips m t_y at pi, so its target is -1 (flat) for t_y >= pi / m and the undetached
    gradient there is zero; with CGD the sample still gets the full cos gradient: the instability
    / vanishing-gradient motivation for the detachment, in one sample."""
    m, t_y = 1.5, 2.5  # m t_y = 3.75 > pi
    x = torch.tensor([[math.cos(t_y), math.sin(t_y)]], dtype=torch.float64)
    labels = torch.tensor([0])
    grads = {}
    for detach in (False, True):
        head = SphereFaceR(2, 2, m=m, s=7.0, margin_type="v1", detach=detach).double()
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        assert head.training_logits(x, labels)[0, 0].item() == pytest.approx(-7.0)
        xx = x.clone().requires_grad_(True)
        (g_target,) = torch.autograd.grad(head.training_logits(xx, labels)[0, 0], xx)
        grads[detach] = g_target
    assert grads[False].abs().max() < 1e-12
    assert grads[True].norm() > 1.0


def test_spherefacer_scores_are_label_free_scaled_cosines() -> None:
    torch.manual_seed(4)
    x = _data()
    for fn, scale in (("hard", torch.full((N, 1), 10.0, dtype=torch.float64)), ("none", x.norm(dim=1, keepdim=True))):
        head = _sfr("v2", fn, 1.5)
        cos = (x / x.norm(dim=1, keepdim=True)) @ (head.weight / head.weight.norm(dim=1, keepdim=True)).t()
        torch.testing.assert_close(head.scores(x), scale * cos)


def test_spherefacer_survives_a_cosine_rounded_above_one() -> None:
    """The public code takes acos of x . w / |x| with w normalised in place, and clamps the cosine
    to 1 - 1e-5 first: an embedding equal to its class weight rounds to cos = 1.0000002 in float32,
    whose acos is NaN. Our cosines are clamped to [-1, 1] (exactly, no 1e-5 offset) and the angle
    maps keep finite slopes, with or without the detachment."""
    torch.manual_seed(0)
    v = torch.randn(1, 8)
    unit = torch.nn.functional.normalize(v, dim=1)
    raw = (v @ unit.t() / v.norm(dim=1, keepdim=True)).squeeze()
    assert raw.item() > 1.0 and torch.isnan(torch.acos(raw))
    for mt in ("v0", "v1", "v2"):
        for detach in (True, False):
            head = SphereFaceR(8, 3, margin_type=mt, detach=detach)
            with torch.no_grad():
                head.weight[0] = v[0]
            x = v.clone().requires_grad_(True)
            loss = head(x, torch.tensor([0]))
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


# =============================================================================================
# SphereFace2
# =============================================================================================

SF2_CASES = [(0.7, 40.0, 0.4, 3.0), (0.6, 8.0, 0.2, 1.0), (0.8, 16.0, 0.5, 2.5)]


def _sf2(alpha: float, r: float, m: float, t: float, detach: bool = True) -> SphereFace2:
    head = SphereFace2(D, C, alpha=alpha, r=r, m=m, t=t, detach=detach).double()
    with torch.no_grad():
        head.bias.add_(0.3)  # away from the start value, so a bias that is ignored would show
    return head


@pytest.mark.parametrize(("alpha", "r", "m", "t"), SF2_CASES)
@pytest.mark.parametrize("detach", [True, False])
def test_sphereface2_value_matches_reference(alpha: float, r: float, m: float, t: float, detach: bool) -> None:
    torch.manual_seed(1)
    head = _sf2(alpha, r, m, t, detach)
    x = _data()
    want = sphereface2_loss(x.tolist(), _w(head), LABELS.tolist(), alpha, r, m, t, head.bias.item())
    assert head(x, LABELS).item() == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("alpha", "r", "m", "t"), SF2_CASES)
def test_sphereface2_gradcheck_without_detachment(alpha: float, r: float, m: float, t: float) -> None:
    torch.manual_seed(2)
    assert _gradcheck(_sf2(alpha, r, m, t, detach=False), _data(3), LABELS, names=("weight", "bias"))


@pytest.mark.parametrize(("alpha", "r", "m", "t"), SF2_CASES)
def test_sphereface2_detached_gradient_is_that_of_the_frozen_adjustment(alpha: float, r: float, m: float,
                                                                        t: float) -> None:
    """With the code's detachment the gradient is that of r cos + b with g(cos) -/+ m - cos frozen."""
    torch.manual_seed(2)
    head = _sf2(alpha, r, m, t)
    x, y, w, b = _data(3), LABELS.tolist(), _w(head), head.bias.item()
    adjust = sphereface2_adjustments(x.tolist(), w, y, m, t)
    want = numerical_grad(lambda xx: sphereface2_with_adjusted(xx, w, y, adjust, alpha, r, b), x.tolist())
    xx = x.clone().requires_grad_(True)
    loss = head(xx, LABELS)
    gx, gb = torch.autograd.grad(loss, (xx, head.bias))
    torch.testing.assert_close(gx, torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    h = 1e-6
    want_b = (sphereface2_with_adjusted(x.tolist(), w, y, adjust, alpha, r, b + h)
              - sphereface2_with_adjusted(x.tolist(), w, y, adjust, alpha, r, b - h)) / (2 * h)
    assert gb.item() == pytest.approx(want_b, rel=1e-6)


@pytest.mark.parametrize(("classes", "alpha", "r", "m", "t"), [
    (10, 0.7, 40.0, 0.4, 3.0),  # the code's defaults on Fashion-MNIST's 10 classes
    (1000, 0.7, 40.0, 0.4, 3.0),
    (2, 0.7, 40.0, 0.4, 3.0),  # z = 7/3 > 1
    (2, 0.5, 40.0, 0.4, 3.0),  # z = 1 exactly
    (2, 0.7, 64.0, 0.5, 3.0),  # z > 1 and e^{-2 r m} below double rounding of (1 - z)^2
])
def test_sphereface2_bias_starts_at_the_minimiser(classes: int, alpha: float, r: float, m: float, t: float) -> None:
    want = sphereface2_bias_by_bisection(classes, alpha, r, m, t)
    assert initial_bias(classes, alpha, r, m, t) == pytest.approx(want, rel=1e-9, abs=1e-9)
    head = SphereFace2(4, classes, alpha=alpha, r=r, m=m, t=t)
    assert head.bias.item() == pytest.approx(want, rel=1e-6)


def test_sphereface2_public_bias_formula_fails_where_ours_does_not() -> None:
    """Pinned failure of the public closed form: for C = 2, alpha = 0.7 (z = 7/3 > 1), r = 64,
    m = 0.5, 4 z e^{-64} vanishes next to (1 - z)^2, 1 - z + sqrt(...) cancels to 0 and
    log(0) raises. Where it works (the defaults, 10 classes) it agrees with ours."""
    assert opensphere_bias_formula(10, 0.7, 40.0, 0.4, 3.0) == pytest.approx(initial_bias(10, 0.7, 40.0, 0.4, 3.0),
                                                                            rel=1e-12)
    with pytest.raises(ValueError, match="math domain error"):
        opensphere_bias_formula(2, 0.7, 64.0, 0.5, 3.0)
    assert math.isfinite(initial_bias(2, 0.7, 64.0, 0.5, 3.0))


def test_sphereface2_prediction_is_argmax_of_g_which_is_argmax_of_cos() -> None:
    """Scores are g(cos t_j) (no bias, no margin, no label); g is increasing, so the argmax is the
    cosine argmax."""
    torch.manual_seed(8)
    head = SphereFace2(D, 6, t=3.0).double()
    x = torch.randn(200, D, dtype=torch.float64)
    cos = (x / x.norm(dim=1, keepdim=True)) @ (head.weight / head.weight.norm(dim=1, keepdim=True)).t()
    torch.testing.assert_close(head.scores(x), 2.0 * ((cos + 1.0) / 2.0) ** 3 - 1.0)
    assert torch.equal(head.predict(x), cos.argmax(dim=1))
    grid = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64)
    for t in (1.0, 2.0, 3.0, 5.5):
        gz = similarity_g(grid, t)
        assert gz[0].item() == -1.0 and gz[-1].item() == 1.0 and (gz[1:] >= gz[:-1]).all()
        inner = gz[1:] > -1.0 + 1e-9  # strictly where ((z + 1) / 2)^t is not below float64's resolution of -1
        assert (gz[1:][inner] > gz[:-1][inner]).all()


def test_sphereface2_training_logits_carry_the_margin_and_bias() -> None:
    """r (g -/+ m) + b: the true class gets -r m, the others +r m, around the label-free r g + b."""
    torch.manual_seed(9)
    head = _sf2(0.7, 40.0, 0.4, 3.0)
    x = _data()
    base = 40.0 * head.scores(x) + head.bias
    shift = torch.full((N, C), 40.0 * 0.4, dtype=torch.float64).scatter(1, LABELS.view(-1, 1), -40.0 * 0.4)
    torch.testing.assert_close(head.training_logits(x, LABELS), base + shift)
    assert "bias" in head.state_dict() and any(p is head.bias for p in head.parameters())


# =============================================================================================
# All three: numerics over their options, and bad keys
# =============================================================================================

OPTION_HEADS = [
    ("lsoftmax_pure_m6", lambda d, c: LSoftmax(d, c, m=6, anneal=False, lambda_min=0.0)),
    *[(f"spherefacer_{mt}_{fn}_{dt}", lambda d, c, mt=mt, fn=fn, dt=dt: SphereFaceR(d, c, margin_type=mt,
                                                                                 feature_norm=fn, detach=dt))
      for mt in ("v0", "v1", "v2") for fn in ("hard", "none", "soft") for dt in (True, False)],
    *[(f"sphereface2_{dt}", lambda d, c, dt=dt: SphereFace2(d, c, detach=dt)) for dt in (True, False)],
    ("sphereface2_t1_r64", lambda d, c: SphereFace2(d, c, t=1.0, r=64.0, m=0.5, detach=False)),
]


@pytest.mark.parametrize("make", [h[1] for h in OPTION_HEADS], ids=[h[0] for h in OPTION_HEADS])
def test_finite_at_plus_minus_one_zero_embedding_and_bf16(make) -> None:
    torch.manual_seed(0)
    _assert_finite_everywhere(make(2, 3))
    _assert_bf16_float32(make(D, C))


BAD = [
    (LSoftmax, "lsoftmax", "m", 2.5, "integer >= 1"),
    (LSoftmax, "lsoftmax", "lambda_min", -1.0, ">= 0"),
    (LSoftmax, "lsoftmax", "lambda_power", math.nan, ">= 0"),
    (LSoftmax, "lsoftmax", "anneal", "yes", "true or false"),
    (SphereFaceR, "spherefacer", "m", 0.5, ">= 1"),
    (SphereFaceR, "spherefacer", "s", 0.0, "> 0"),
    (SphereFaceR, "spherefacer", "margin_type", "v3", "v0, v1, v2"),
    (SphereFaceR, "spherefacer", "feature_norm", "l2", "hard, none, soft"),
    (SphereFaceR, "spherefacer", "soft_weight", -0.1, ">= 0"),
    (SphereFaceR, "spherefacer", "detach", 1, "true or false"),
    (SphereFace2, "sphereface2", "alpha", 1.0, "> 0 and < 1"),
    (SphereFace2, "sphereface2", "alpha", 0, "> 0 and < 1"),
    (SphereFace2, "sphereface2", "r", -40.0, "> 0"),
    (SphereFace2, "sphereface2", "m", -0.4, ">= 0"),
    (SphereFace2, "sphereface2", "t", 0.5, ">= 1"),
    (SphereFace2, "sphereface2", "detach", "no", "true or false"),
]


@pytest.mark.parametrize(("cls", "owner", "key", "value", "rule"), BAD,
                         ids=[f"{o}-{k}-{v}" for _, o, k, v, _ in BAD])
def test_bad_value_is_a_one_line_error_naming_the_key(cls, owner: str, key: str, value, rule: str) -> None:
    with pytest.raises(ValueError) as info:
        cls(4, 3, **{key: value})
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"loss.{key}={value} is invalid for {owner}: {key} ")
    assert rule in msg
