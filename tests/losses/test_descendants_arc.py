"""Sub-center ArcFace, CurricularFace, AdaFace, UniFace and AM-Softmax: values against the float64
per-sample references (reference_descendants_arc.py), gradcheck, identities with the heads they
extend, pytorch-metric-learning as an oracle, numerics, running statistics (checkpoint, DDP) and
the authors' code's failure modes re-stated in a few lines and pinned."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from reference_descendants_arc import (
    adaface_loss,
    adaface_statistics,
    curricular_t,
    curricularface_loss,
    subcenter_arcface_loss,
    subcenter_outliers,
    uniface_loss,
)

from src.errors import ConfigError
from src.losses.adaface import AdaFace
from src.losses.arcface import ArcFace
from src.losses.base import LossHead
from src.losses.config import loss_config
from src.losses.cosface import CosFace
from src.losses.curricularface import CurricularFace
from src.losses.subcenter_arcface import SubCenterArcFace
from src.losses.uniface import UniFace

D, C, N = 5, 4, 9
F64 = torch.float64


def _data(seed: int = 0, n: int = N, scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g, dtype=F64) * scale
    return x, torch.arange(n) % C


def _near_and_far(head: LossHead, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples close to their class direction (t_y ~ 0.1) with large norms, nearly opposite it
    (t_y ~ pi - 0.1) with small norms, and random ones: where margins leave [0, pi]."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.normalize(head.weight.detach()[:: head.sub_centers].to(F64), dim=1)
    labels = torch.arange(12) % C
    sign = torch.tensor([1.0] * 4 + [-1.0] * 4 + [0.0] * 4, dtype=F64).view(-1, 1)
    x = sign * w[labels] + 0.05 * torch.randn(12, D, generator=g, dtype=F64) + (sign == 0) * torch.randn(
        12, D, generator=g, dtype=F64)
    norms = torch.cat([torch.linspace(6.0, 8.0, 4), torch.linspace(0.5, 1.0, 4), torch.linspace(1.0, 5.0, 4)])
    return torch.nn.functional.normalize(x, dim=1) * norms.to(F64).view(-1, 1), labels


def _w(head: LossHead) -> list[list[float]]:
    return head.weight.detach().tolist()


def _approx(got: torch.Tensor, want: float) -> None:
    assert got.dtype == F64
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-9)


def _gradcheck(head: LossHead, x: torch.Tensor, labels: torch.Tensor, extra: tuple[str, ...] = ()) -> None:
    """gradcheck in x, the weight and any named parameter, with the running statistics fixed
    (eval mode: gradcheck calls the function many times and must see one function). AdaFace's z
    is held at its value for x: it is built from the detached norm, so by design no gradient
    flows through it, while gradcheck's finite differences would move it."""
    head.eval()
    names = ("weight", *extra)
    params = tuple(getattr(head, n).detach().clone().requires_grad_(True) for n in names)

    def loss(xx: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(head, dict(zip(names, ps, strict=True)), (xx, labels))

    if isinstance(head, AdaFace):
        z = head.margin_scaler(x)
        head.margin_scaler = lambda _emb: z  # an instance attribute, removed below
    try:
        assert torch.autograd.gradcheck(loss, (x.clone().requires_grad_(True), *params), eps=1e-6, atol=1e-5,
                                        rtol=1e-4)
    finally:
        vars(head).pop("margin_scaler", None)


# --- sub-center ArcFace --------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["monotone", "fallback"])
@pytest.mark.parametrize("m", [0.5, 2.0])
def test_subcenter_matches_reference_and_gradcheck(m: float, convention: str) -> None:
    torch.manual_seed(0)
    head = SubCenterArcFace(D, C, m=m, s=10.0, convention=convention, sub_centers=3).double().eval()
    for x, labels in (_data(), _near_and_far(head)):
        _approx(head(x, labels), subcenter_arcface_loss(x.tolist(), _w(head), labels.tolist(), m, 10.0, 3, convention))
    _gradcheck(head, *_data(1))


def test_subcenter_drop_matches_reference_and_starts_on_schedule() -> None:
    torch.manual_seed(0)
    head = SubCenterArcFace(D, C, s=10.0, sub_centers=3, drop_threshold_deg=70.0, drop_start_step=1).double().train()
    x, labels = _data(2)
    out = subcenter_outliers(x.tolist(), _w(head), labels.tolist(), 3, 70.0)
    assert 0 < sum(out) < N  # the batch has both kinds
    assert head.outliers(x, labels, 70.0).tolist() == out
    full = subcenter_arcface_loss(x.tolist(), _w(head), labels.tolist(), 0.5, 10.0, 3)
    _approx(head(x, labels), full)  # step 0 < drop_start_step: nothing dropped yet
    kept = subcenter_arcface_loss(x.tolist(), _w(head), labels.tolist(), 0.5, 10.0, 3, keep=[not o for o in out])
    _approx(head(x, labels), kept)
    assert int(head.step) == 2
    head.eval()
    _approx(head(x, labels), full)  # evaluation never drops (and does not count)
    assert int(head.step) == 2


def test_subcenter_all_dropped_batch_is_zero_with_a_graph() -> None:
    head = SubCenterArcFace(D, C, drop_threshold_deg=1e-3).train()
    x = torch.randn(6, D, requires_grad=True)
    loss = head(x, torch.arange(6) % C)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("convention", ["monotone", "fallback"])
def test_subcenter_k1_is_arcface_exactly(convention: str) -> None:
    torch.manual_seed(0)
    sub = SubCenterArcFace(D, C, m=0.7, s=20.0, convention=convention, sub_centers=1)
    arc = ArcFace(D, C, m=0.7, s=20.0, convention=convention)
    with torch.no_grad():
        arc.weight.copy_(sub.weight)
    x, labels = _data()
    xs, xa = x.float().requires_grad_(True), x.float().requires_grad_(True)
    ls, la = sub(xs, labels), arc(xa, labels)
    ls.backward()
    la.backward()
    assert torch.equal(ls, la) and torch.equal(xs.grad, xa.grad) and torch.equal(sub.weight.grad, arc.weight.grad)


def test_subcenter_identical_subcentres_are_arcface() -> None:
    """K copies of each class row: the same cosines, so the same loss; amax splits the gradient
    evenly over the tied copies, so each class's K row gradients sum to ArcFace's."""
    torch.manual_seed(0)
    arc = ArcFace(D, C, m=0.5, s=30.0).double()
    sub = SubCenterArcFace(D, C, m=0.5, s=30.0, sub_centers=3).double()
    with torch.no_grad():
        sub.weight.copy_(arc.weight.repeat_interleave(3, 0))
    x, labels = _data()
    xs, xa = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ls, la = sub(xs, labels), arc(xa, labels)
    ls.backward()
    la.backward()
    torch.testing.assert_close(ls, la, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xs.grad, xa.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sub.weight.grad.view(C, 3, D).sum(1), arc.weight.grad, rtol=1e-10, atol=1e-12)


def test_subcenter_against_pytorch_metric_learning() -> None:
    """PML's SubCenterArcFaceLoss: margin in degrees (its default 28.6 is 0.49916 rad, not 0.5),
    W stored (D, C K) with the same class-major order, the fallback rule on the angle (our
    ``fallback``; ``monotone`` agrees wherever t_y + m <= pi), mean over the batch."""
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    torch.manual_seed(0)
    m, s = 0.5, 64.0
    pml = losses.SubCenterArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(m), scale=s,
                                      sub_centers=3)
    pml.W.data = pml.W.data.double()
    x, labels = _data(3)
    for convention in ("fallback", "monotone"):
        head = SubCenterArcFace(D, C, m=m, s=s, convention=convention, sub_centers=3).double()
        with torch.no_grad():
            head.weight.copy_(pml.W.t())
        assert (torch.acos(head.cosines(x).gather(1, labels.view(-1, 1))) + m <= math.pi).all()
        xh, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ours, theirs = head(xh, labels), pml(xp, labels)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(xh.grad, xp.grad, rtol=1e-7, atol=1e-9)
    # Its outlier rule (dominant sub-centre = most of the class's samples) is ours.
    x, labels = _data(4, n=40)
    theirs_idx, _ = pml.get_outliers(x, labels, threshold=80)
    assert sorted(theirs_idx.tolist()) == head.outliers(x, labels, 80.0).nonzero().flatten().tolist()


# --- CurricularFace ------------------------------------------------------------------------------


def _hard_negatives(head: CurricularFace, x: torch.Tensor, labels: torch.Tensor) -> int:
    cos = head.cosines(x)
    target = head.target_cos(cos.gather(1, labels.view(-1, 1)).squeeze(1))
    hard = cos > target.view(-1, 1)
    hard[torch.arange(len(labels)), labels] = False
    return int(hard.sum())


@pytest.mark.parametrize("convention", ["fallback", "monotone"])
def test_curricularface_matches_reference_and_gradcheck(convention: str) -> None:
    torch.manual_seed(0)
    head = CurricularFace(D, C, m=0.5, s=10.0, convention=convention, momentum=0.3).double()
    x, labels = _data()
    assert _hard_negatives(head, x, labels) > 0
    w, xs, ys = _w(head), x.tolist(), labels.tolist()
    head.eval()  # t = 0, its initial value: hard negatives become cos^2
    _approx(head(x, labels), curricularface_loss(xs, w, ys, 0.5, 10.0, 0.0, convention))
    _gradcheck(head, x, labels)
    head.train()
    t = 0.0
    for seed in range(3):  # a few updates; each forward uses the t it has just updated
        xb, yb = _data(seed + 10)
        t = curricular_t(t, xb.tolist(), w, yb.tolist(), 0.3)
        _approx(head(xb, yb), curricularface_loss(xb.tolist(), w, yb.tolist(), 0.5, 10.0, t, convention))
    assert head.t.item() == pytest.approx(t, rel=1e-12)
    near, ny = _near_and_far(head)  # t_y near 0 and near pi (the fallback branch)
    _gradcheck(head, near, ny)
    _approx(head(near, ny), curricularface_loss(near.tolist(), w, ny.tolist(), 0.5, 10.0, t, convention))


def test_curricularface_without_hard_negatives_is_arcface() -> None:
    """t only acts on hard negatives: with none, any t gives ArcFace's loss (its fallback rule)."""
    head = CurricularFace(C, C, m=0.5, s=30.0).double()
    arc = ArcFace(C, C, m=0.5, s=30.0, convention="fallback").double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(C))
        arc.weight.copy_(torch.eye(C))
    labels = torch.arange(8) % C
    x = 3.0 * torch.eye(C, dtype=F64)[labels] + 0.1 * torch.randn(8, C, generator=torch.Generator().manual_seed(0),
                                                                   dtype=F64)
    assert _hard_negatives(head, x, labels) == 0
    head.eval()
    assert head.t.item() == 0.0
    torch.testing.assert_close(head(x, labels), arc(x, labels), rtol=1e-12, atol=1e-12)
    head.train()
    for _ in range(3):
        head(x, labels)
    assert head.t.item() > 0.0
    torch.testing.assert_close(head(x, labels), arc(x, labels), rtol=1e-12, atol=1e-12)


def test_curricularface_public_sqrt_has_infinite_and_nan_gradients() -> None:
    """The authors' target, re-stated: sin = sqrt(1 - cos^2) after clamp(-1, 1), cos(t + m), and
    torch.where with the fallback. d/dcos is +inf at cos = 1 and NaN at cos = -1 (the unselected
    branch's infinity times 0). Ours, at the same points, is finite."""
    m = 0.5
    cos = torch.tensor([1.0, -1.0, 0.3], requires_grad=True)
    c = cos.clamp(-1, 1)
    sin = torch.sqrt(1.0 - torch.pow(c, 2))
    cos_m = c * math.cos(m) - sin * math.sin(m)
    final = torch.where(c > math.cos(math.pi - m), cos_m, c - math.sin(math.pi - m) * m)
    final.sum().backward()
    assert cos.grad[0] == math.inf and math.isnan(cos.grad[1]) and math.isfinite(cos.grad[2])

    head = CurricularFace(2, 3).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [1.0, 1.0]], requires_grad=True)  # cos t_y = 1, -1, generic
    head.t.fill_(0.9)
    loss = head(x, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_curricularface_t_moves_only_in_training() -> None:
    head = CurricularFace(D, C)
    x, labels = _data()
    head.eval()
    head(x.float(), labels)
    head.training_logits(x.float(), labels)
    assert head.t.item() == 0.0
    head.train()
    head.training_logits(x.float(), labels)  # the audit's logits never update
    assert head.t.item() == 0.0
    head(x.float(), labels)
    assert head.t.item() != 0.0


# --- AdaFace -------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["clip", "monotone"])
def test_adaface_matches_reference_and_gradcheck(convention: str) -> None:
    torch.manual_seed(0)
    head = AdaFace(D, C, m=0.4, h=0.333, s=10.0, t_alpha=0.3, convention=convention).double()
    w = _w(head)
    x, labels = _data()
    head.eval()  # the initial statistics, mu = 20, sigma = 100
    _approx(head(x, labels), adaface_loss(x.tolist(), w, labels.tolist(), 0.4, 0.333, 10.0, 20.0, 100.0, convention))
    _gradcheck(head, x, labels)
    head.train()
    mu, sigma = 20.0, 100.0
    for seed in range(3):  # a few updates; each forward uses the statistics it has just updated
        xb, yb = _data(seed + 10, scale=1.0 + seed)
        mu, sigma = adaface_statistics(mu, sigma, xb.tolist(), 0.3)
        want = adaface_loss(xb.tolist(), w, yb.tolist(), 0.4, 0.333, 10.0, mu, sigma, convention)
        _approx(head(xb, yb), want)
    assert (head.batch_mean.item(), head.batch_std.item()) == pytest.approx((mu, sigma), rel=1e-12)
    # Statistics that put z at -1 and +1 and angles t_y -+ m z outside [0, pi].
    near, ny = _near_and_far(head)
    with torch.no_grad():
        head.batch_mean.fill_(4.0)
        head.batch_std.fill_(1.0)
        head.h = 1.0
    z = head.margin_scaler(near)
    assert (z == 1).any() and (z == -1).any()
    t = torch.acos(head.cosines(near).gather(1, ny.view(-1, 1)).squeeze(1))
    a = t - 0.4 * z
    assert (a < 0).any() and (a > math.pi).any()
    _approx(head.eval()(near, ny), adaface_loss(near.tolist(), w, ny.tolist(), 0.4, 1.0, 10.0, 4.0, 1.0, convention))
    _gradcheck(head, near, ny)
    assert torch.equal(head.margin_scaler(near), z)


def test_adaface_angle_convention() -> None:
    """Beyond [0, pi]: ``clip`` is flat (the authors' rule: zero gradient there), ``monotone``
    continues Phi (2 - cos a below 0, -2 - cos a above pi), strictly decreasing in t_y."""
    from src.losses.adaface import adaface_target

    t = torch.linspace(0.0, math.pi, 2001, dtype=F64)
    for g in (0.4, -0.4):  # z = 1 (angular bonus m) and z = -1 (angular margin m)
        c = torch.cos(t).requires_grad_(True)
        clip = adaface_target(c, torch.full_like(t, g), "clip")
        (grad,) = torch.autograd.grad(clip.sum(), c)
        a = t - g
        outside = (a < 0) | (a > math.pi)
        assert outside.any()
        torch.testing.assert_close(clip.detach(), torch.cos(a.clamp(0, math.pi)))
        assert (grad[outside] == 0).all() and (grad[~outside & (t > 1e-3) & (t < math.pi - 1e-3)] > 0).all()
        mono = adaface_target(torch.cos(t), torch.full_like(t, g), "monotone")
        assert (mono[1:] < mono[:-1]).all()
        below, above = a < 0, a > math.pi
        torch.testing.assert_close(mono[below], 2.0 - torch.cos(a[below]))
        torch.testing.assert_close(mono[above], -2.0 - torch.cos(a[above]))


def test_adaface_z0_is_cosface_and_z_minus1_is_arcface() -> None:
    """z = 0: cos(t_y) - m, CosFace with margin m. z = -1: cos(t_y + m), ArcFace (where
    t_y + m <= pi; beyond it ``clip`` gives -1)."""
    torch.manual_seed(0)
    x, labels = _data()
    zero = AdaFace(D, C, m=0.4, h=0.0, s=30.0).double()
    cos = CosFace(D, C, m=0.4, s=30.0).double()
    arc = ArcFace(D, C, m=0.4, s=30.0).double()
    with torch.no_grad():
        cos.weight.copy_(zero.weight)
        arc.weight.copy_(zero.weight)
    for mode in (zero.eval, zero.train):
        mode()
        torch.testing.assert_close(zero(x, labels), cos(x, labels), rtol=1e-12, atol=1e-12)
    minus = AdaFace(D, C, m=0.4, h=1e6, s=30.0).double().eval()  # every norm far below mu = 20
    with torch.no_grad():
        minus.weight.copy_(zero.weight)
    assert (minus.margin_scaler(x) == -1).all()
    assert (torch.acos(arc.cosines(x).gather(1, labels.view(-1, 1))) + 0.4 <= math.pi).all()
    torch.testing.assert_close(minus(x, labels), arc(x, labels), rtol=1e-12, atol=1e-12)


def test_adaface_public_std_of_one_sample_poisons_the_buffer() -> None:
    """The authors' update, re-stated: torch.std of a one-sample batch is NaN and stays in the
    EMA for good. Ours keeps sigma (and still moves mu) for a one-sample batch."""
    norms = torch.tensor([[7.0]])
    batch_std = torch.ones(1) * 100
    with pytest.warns(UserWarning, match="degrees of freedom"):
        batch_std = norms.std() * 0.01 + 0.99 * batch_std
    assert math.isnan(batch_std.item())

    head = AdaFace(D, C).train()
    head(torch.randn(1, D), torch.tensor([2]))
    assert head.batch_std.item() == 100.0 and head.batch_mean.item() != 20.0
    loss = head(torch.randn(3, D), torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss) and math.isfinite(head.batch_std.item())


def test_adaface_statistics_move_only_in_training() -> None:
    head = AdaFace(D, C)
    x, labels = _data()
    head.eval()
    head(x.float(), labels)  # the authors' head updates here too; ours does not
    head.train()
    head.training_logits(x.float(), labels)
    assert (head.batch_mean.item(), head.batch_std.item()) == (20.0, 100.0)
    head(x.float(), labels)
    assert head.batch_mean.item() != 20.0 and head.batch_std.item() != 100.0


# --- UniFace -------------------------------------------------------------------------------------


def _uniface(**kw: float) -> UniFace:
    torch.manual_seed(0)
    return UniFace(D, C, **kw).double()


@pytest.mark.parametrize(("kw", "b"), [({}, math.log(10 * C)), ({"bias_init": 2.5, "lambda_neg": 0.5}, 2.5),
                                       ({"m": 0.0, "s": 8.0, "bias_init": -1.0}, -1.0)])
def test_uniface_matches_reference_and_gradcheck(kw: dict, b: float) -> None:
    head = _uniface(**kw)
    assert head.bias.shape == (1,) and head.bias.item() == pytest.approx(b)
    m, s, lam = kw.get("m", 0.4), kw.get("s", 64.0), kw.get("lambda_neg", 1.0)
    for x, labels in (_data(), _near_and_far(head)):
        _approx(head(x, labels), uniface_loss(x.tolist(), _w(head), labels.tolist(), m, s, b, lam))
    with torch.no_grad():
        head.bias.fill_(b + 0.7)  # after a few updates of the learned bias
    x, labels = _data(1)
    _approx(head(x, labels), uniface_loss(x.tolist(), _w(head), labels.tolist(), m, s, b + 0.7, lam))
    if s < 20:  # gradcheck where softplus is smooth at the eps used (s = 64 saturates float64 differences)
        _gradcheck(head, x, labels, extra=("bias",))


def test_uniface_gradcheck_at_paper_scale() -> None:
    head = _uniface(s=64.0)
    x, labels = _data(2)
    _gradcheck(head, x * 0.01, labels, extra=("bias",))  # tiny x: still unit directions


def test_uniface_is_one_vs_all_logistic_regression() -> None:
    """Derived: loss = sum_j BCE(z_j, onehot_j), weights 1 (true class) and lambda (others), with
    z = training_logits; b shared by every class never changes the scores or their argmax."""
    head = _uniface(lambda_neg=0.3)
    x, labels = _data()
    z = head.training_logits(x, labels)
    onehot = torch.nn.functional.one_hot(labels, C).to(F64)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, onehot, weight=onehot + 0.3 * (1 - onehot),
                                                               reduction="sum") / len(x)
    torch.testing.assert_close(head(x, labels), bce, rtol=1e-10, atol=1e-10)
    before = head.scores(x).clone()
    with torch.no_grad():
        head.bias.add_(5.0)
    assert torch.equal(head.scores(x), before)
    assert torch.equal(head.training_logits(x, labels).argmax(1), z.argmax(1))


def test_uniface_public_exp_overflows_and_its_clamp_kills_the_gradient() -> None:
    """The authors' term log(1 + exp(clamp(u, -s, s))), re-stated. Unclamped, u = 93 (cos t_y = -1
    at s = 64, b = log(10 C), C = 3) overflows float32 and bfloat16; clamped, float16 overflows at
    u = s = 64 and the gradient beyond the clamp is 0. softplus is finite and exact everywhere."""
    s, m, b = 64.0, 0.4, math.log(30.0)
    u = torch.tensor(-(s * (-1.0 - m) - b))
    for dtype in (torch.float32, torch.bfloat16):
        assert torch.log(1 + torch.exp(u.to(dtype))).isinf()
    assert torch.log(1 + torch.exp(torch.tensor(64.0, dtype=torch.float16))).isinf()
    cos = torch.tensor(-0.9, requires_grad=True)  # a badly misclassified sample
    p = s * (cos - m) - b
    torch.log(1 + torch.exp(-p.clamp(min=-s, max=s))).backward()
    assert cos.grad.item() == 0.0

    head = UniFace(2, 3).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    x = torch.tensor([[-2.0, 0.0], [-1.0, -0.1]], requires_grad=True)  # cos t_y = -1 and ~ -0.995
    labels = torch.tensor([0, 0])
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast(device_type="cpu", dtype=dtype):
            loss = head(x.to(dtype), labels)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss = head(x, labels)
    want = uniface_loss(x.tolist(), _w(head), labels.tolist(), m, s, b, 1.0)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad[1].abs().sum() > 0  # the second sample still learns


# --- AM-Softmax ----------------------------------------------------------------------------------


def test_amsoftmax_is_cosface_with_the_papers_values() -> None:
    cfg = loss_config("amsoftmax")
    assert cfg._target_ == loss_config("cosface")._target_ == "src.losses.cosface.CosFace"
    head = instantiate(cfg, embedding_dim=D, num_classes=C)
    assert type(head) is CosFace and (head.m, head.s) == (0.35, 30.0)


def test_amsoftmax_against_pytorch_metric_learning_cosface() -> None:
    """PML's CosFaceLoss (margin 0.35, its scale set to AM-Softmax's 30): the same loss and gradients."""
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    torch.manual_seed(0)
    pml = losses.CosFaceLoss(num_classes=C, embedding_size=D, margin=0.35, scale=30.0)
    pml.W.data = pml.W.data.double()
    head = instantiate(loss_config("amsoftmax"), embedding_dim=D, num_classes=C).double()
    with torch.no_grad():
        head.weight.copy_(pml.W.t())
    x, labels = _data()
    xh, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, theirs = head(xh, labels), pml(xp, labels)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xh.grad, xp.grad, rtol=1e-10, atol=1e-12)


# --- shared: numerics, checkpoints, DDP, bad keys ------------------------------------------------

NAMES = ["subcenter_arcface", "curricularface", "adaface", "uniface"]
STATE = {"subcenter_arcface": ["step"], "curricularface": ["t"], "adaface": ["batch_mean", "batch_std"],
         "uniface": ["bias"]}


@functools.cache
def _config(name: str) -> DictConfig:
    return loss_config(name)  # composing through Hydra costs ~0.1 s: once per yaml


def _head(name: str, dim: int = D, classes: int = C, **overrides: object) -> LossHead:
    cfg = copy.deepcopy(_config(name))
    for key, value in overrides.items():
        cfg[key] = value
    return instantiate(cfg, embedding_dim=dim, num_classes=classes)


VARIANTS = [("subcenter_arcface", {"drop_threshold_deg": 75.0}), ("subcenter_arcface", {"convention": "fallback"}),
            ("curricularface", {"convention": "monotone"}), ("adaface", {"convention": "monotone"}),
            ("adaface", {"h": 50.0}), ("uniface", {"lambda_neg": 0.2})]


@pytest.mark.parametrize(("name", "overrides"), [(n, {}) for n in NAMES] + VARIANTS)
def test_finite_at_the_ends_in_every_state(name: str, overrides: dict) -> None:
    """cos t_y = +-1, a zero embedding and norms from 0 to 40, with the statistics at their
    initial values and pushed to their extremes (t = +-1, z = +-1)."""
    head = _head(name, dim=2, classes=3, **overrides).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).repeat_interleave(head.sub_centers, 0))
    x = torch.tensor([[3.0, 0.0], [-40.0, 0.0], [0.0, 0.0], [0.5, -1.5], [0.0, 4.0], [0.0, -0.01]])
    labels = torch.tensor([0, 0, 1, 2, 1, 1])
    for extreme in (None, 1.0, -1.0):
        if extreme is not None and name == "curricularface":
            head.t.fill_(extreme)
        if extreme is not None and name == "adaface":
            head.batch_mean.fill_(2.0)
            head.batch_std.fill_(0.01)
        xx = x.clone().requires_grad_(True)
        head.zero_grad()
        loss = head(xx, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xx.grad).all()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in head.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_fp16_zero_and_tiny_embeddings_keep_gradients_finite(name: str) -> None:
    """As tests/losses/test_numerics.py does for the older heads, at s = 64."""
    torch.manual_seed(0)
    head = _head(name, dim=8, classes=4).train()
    emb32 = torch.randn(8, 8)
    emb32[0] = 0.0
    emb32[1] = 6e-8
    emb32[2] = 1e-4
    emb = emb32.half().requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.float16):
        loss = head(emb, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_bf16_autocast_variants(name: str, overrides: dict) -> None:
    """The generic bf16 test covers the yamls' defaults; these are the other options."""
    torch.manual_seed(0)
    head = _head(name, **overrides).train()
    enc = torch.nn.Linear(6, D)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        emb = enc(torch.randn(16, 6))
        loss = head(emb, torch.arange(16) % C)
        logits = head.training_logits(emb, torch.arange(16) % C)
    assert loss.dtype == logits.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(enc.weight.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_a_checkpoint(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    head = _head(name).train()
    x, labels = _data()
    x = x.float()
    for _ in range(3):
        head(x, labels)
    if name == "uniface":
        with torch.no_grad():
            head.bias.add_(0.5)
    state = head.state_dict()
    assert set(STATE[name]) <= set(state) and "weight" in state
    torch.save(state, tmp_path / "head.pt")
    fresh = _head(name)
    fresh.load_state_dict(torch.load(tmp_path / "head.pt"))
    for key in STATE[name]:
        assert torch.equal(fresh.state_dict()[key], state[key])
    head.eval()
    fresh.eval()
    assert torch.equal(fresh(x, labels), head(x, labels))


def _fake_second_rank(monkeypatch: pytest.MonkeyPatch, other: torch.Tensor) -> None:
    """torch.distributed as if initialised with a second rank whose batch values are ``other``."""
    import src.losses.running_stats as rs

    o = other.double()
    sums = torch.stack([torch.tensor(float(o.numel()), dtype=F64), o.sum(), (o * o).sum()])

    def all_reduce(tensor: torch.Tensor, op: object = None) -> None:
        tensor += sums

    monkeypatch.setattr(rs.dist, "is_available", lambda: True)
    monkeypatch.setattr(rs.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(rs.dist, "all_reduce", all_reduce)


def test_ddp_curricularface_t_is_the_global_batch_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    head = CurricularFace(D, C, momentum=0.5).double().train()
    x, labels = _data()
    mine = head.cosines(x).gather(1, labels.view(-1, 1)).flatten()
    other = torch.tensor([0.9, 0.8, 0.7], dtype=F64)
    _fake_second_rank(monkeypatch, other)
    head(x, labels)
    assert head.t.item() == pytest.approx(0.5 * torch.cat([mine, other]).mean().item(), rel=1e-12)


def test_ddp_adaface_statistics_are_the_global_batch_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    head = AdaFace(D, C, t_alpha=1.0).double().train()
    x, labels = _data()
    other = torch.tensor([30.0, 31.0, 35.0, 50.0], dtype=F64)
    _fake_second_rank(monkeypatch, other)
    head(x, labels)
    both = torch.cat([x.norm(dim=1), other])
    assert head.batch_mean.item() == pytest.approx(both.mean().item(), rel=1e-12)
    assert head.batch_std.item() == pytest.approx(both.std().item(), rel=1e-10)


def test_statistics_under_a_real_single_process_group(tmp_path) -> None:
    """The real torch.distributed calls (gloo, world size 1) give the single-process values."""
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    x, labels = _data()
    plain = AdaFace(D, C).double().train()
    plain(x, labels)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        synced = AdaFace(D, C).double().train()
        synced(x, labels)
    finally:
        dist.destroy_process_group()
    assert torch.equal(synced.batch_mean, plain.batch_mean) and torch.equal(synced.batch_std, plain.batch_std)


BAD: list[tuple[Callable[[], LossHead], str]] = [
    (lambda: SubCenterArcFace(D, C, sub_centers=0), "loss.sub_centers=0"),
    (lambda: SubCenterArcFace(D, C, drop_threshold_deg=200.0), "loss.drop_threshold_deg=200.0"),
    (lambda: SubCenterArcFace(D, C, drop_start_step=-1), "loss.drop_start_step=-1"),
    (lambda: SubCenterArcFace(D, C, m=-0.1), "loss.m=-0.1"),
    (lambda: CurricularFace(D, C, momentum=1.5), "loss.momentum=1.5"),
    (lambda: CurricularFace(D, C, convention="easy"), "loss.convention=easy"),
    (lambda: AdaFace(D, C, t_alpha=-0.01), "loss.t_alpha=-0.01"),
    (lambda: AdaFace(D, C, h=-1.0), "loss.h=-1.0"),
    (lambda: AdaFace(D, C, init_std=float("nan")), "loss.init_std=nan"),
    (lambda: AdaFace(D, C, convention="fallback"), "loss.convention=fallback"),
    (lambda: UniFace(D, C, lambda_neg=-1.0), "loss.lambda_neg=-1.0"),
    (lambda: UniFace(D, C, bias_init="big"), "loss.bias_init=big"),
    (lambda: UniFace(D, C, s=0.0), "loss.s=0.0"),
]


@pytest.mark.parametrize(("make", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_key_is_one_line_naming_key_and_head(make: Callable[[], LossHead], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.startswith(expected) and " must be " in message, message
    assert any(f"invalid for {n}:" in message for n in NAMES), message
