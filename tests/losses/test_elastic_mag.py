"""ElasticFace and MagFace: values and gradients against the float64 per-sample references
(reference_elastic_mag.py), gradcheck, identities with ArcFace / CosFace, ElasticFace's randomness
(seeded, off at evaluation, the + variant's assignment by rank), MagFace's magnitude terms (the
regulariser's shape, the lambda_g bound, the optimal magnitude), numerics, bad keys, and the
authors' code's failure modes re-stated in a few lines and pinned."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from reference_elastic_mag import (
    elastic_margins,
    elasticface_loss,
    magface_loss,
    numeric_gradient,
    true_cosines,
)

from src.errors import ConfigError
from src.losses.arcface import ArcFace
from src.losses.base import LossHead
from src.losses.config import loss_config
from src.losses.cosface import CosFace
from src.losses.elasticface import ElasticFace, arc_cos_per_sample
from src.losses.magface import MagFace
from src.losses.margin import arc_margin_cos

D, C, N = 5, 4, 9
F64 = torch.float64


def _data(seed: int = 0, n: int = N, norms: tuple[float, float] = (0.5, 3.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random directions with norms spread over ``norms``; labels cycle through the classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(n, D, generator=g, dtype=F64), dim=1)
    return x * torch.linspace(*norms, n, dtype=F64).view(-1, 1), torch.arange(n) % C


def _near_and_far(head: LossHead, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples within ~0.05 rad of their class direction, nearly opposite it, and random ones."""
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.normalize(head.weight.detach().to(F64), dim=1)
    labels = torch.arange(12) % C
    sign = torch.tensor([1.0] * 4 + [-1.0] * 4 + [0.0] * 4, dtype=F64).view(-1, 1)
    x = sign * w[labels] + 0.05 * torch.randn(12, D, generator=g, dtype=F64)
    x = x + (sign == 0) * torch.randn(12, D, generator=g, dtype=F64)
    return 2.0 * torch.nn.functional.normalize(x, dim=1), labels


def _w(head: LossHead) -> list[list[float]]:
    return head.weight.detach().tolist()


def _approx(got: torch.Tensor, want: float) -> None:
    assert got.dtype == F64
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-9)


def _against_reference(head: LossHead, x: torch.Tensor, labels: torch.Tensor, reference: Callable,
                       before: Callable[[], None] = lambda: None) -> None:
    """The head's loss, and its autograd gradients in x and in the weight, against the reference's
    value and central differences. ``before`` runs before the head's call (reseeds a generator)."""
    xs, w, ys = x.tolist(), _w(head), labels.tolist()
    xx = x.clone().requires_grad_(True)
    head.zero_grad()
    before()
    loss = head(xx, labels)
    loss.backward()
    _approx(loss, reference(xs, w, ys))
    grad_x = torch.tensor(numeric_gradient(lambda v: reference(v, w, ys), xs), dtype=F64)
    grad_w = torch.tensor(numeric_gradient(lambda v: reference(xs, v, ys), w), dtype=F64)
    torch.testing.assert_close(xx.grad, grad_x, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(head.weight.grad, grad_w, rtol=1e-6, atol=1e-7)


def _gradcheck(head: LossHead, x: torch.Tensor, labels: torch.Tensor,
               before: Callable[[], None] = lambda: None) -> None:
    """gradcheck in x and the weight; ``before`` runs before every call, so that ElasticFace draws
    the same margins each time (gradcheck must see one function)."""
    weight = head.weight.detach().clone().requires_grad_(True)

    def loss(xx: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
        before()
        return torch.func.functional_call(head, {"weight": ww}, (xx, labels))

    assert torch.autograd.gradcheck(loss, (x.clone().requires_grad_(True), weight), eps=1e-6, atol=1e-5, rtol=1e-4)


def _copy_weight(dst: LossHead, src: LossHead) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)


def _same_loss_and_grads(a: LossHead, b: LossHead, x: torch.Tensor, labels: torch.Tensor, exact: bool = True) -> None:
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a.zero_grad()
    b.zero_grad()
    la, lb = a(xa, labels), b(xb, labels)
    la.backward()
    lb.backward()
    if exact:
        assert torch.equal(la, lb) and torch.equal(xa.grad, xb.grad) and torch.equal(a.weight.grad, b.weight.grad)
    else:
        torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a.weight.grad, b.weight.grad, rtol=1e-10, atol=1e-12)


# --- the per-sample angular target ---------------------------------------------------------------


def test_per_sample_arc_target_is_phi_and_matches_arcface_at_a_constant_margin() -> None:
    """Phi(t + m_i) with k = floor((t + m_i) / pi) of any sign: a constant margin gives ArcFace's
    helper; negative margins continue with 2 - cos a; strictly decreasing in t and in m."""
    t = torch.linspace(0.0, math.pi, 4001, dtype=F64)
    for m in (0.0, 0.5, 2.0, 4.0):
        torch.testing.assert_close(arc_cos_per_sample(torch.cos(t), torch.full_like(t, m)),
                                   arc_margin_cos(torch.cos(t), m), rtol=0, atol=1e-12)
    for m in (-0.3, 0.5, 3.0):
        values = arc_cos_per_sample(torch.cos(t), torch.full_like(t, m))
        assert (values[1:] < values[:-1]).all()
    a = t - 0.3
    torch.testing.assert_close(arc_cos_per_sample(torch.cos(t), torch.full_like(t, -0.3))[a < 0],
                               2.0 - torch.cos(a[a < 0]))
    margins = torch.linspace(-1.0, 5.0, 601, dtype=F64)
    values = arc_cos_per_sample(torch.full_like(margins, math.cos(1.0)), margins)
    assert (values[1:] < values[:-1]).all()


def test_per_sample_arc_target_gradients_in_cos_and_margin() -> None:
    """d/dc = |sin(t + m)| / sin t, d/dm = -|sin(t + m)| (gradcheck), finite at cos = +-1."""
    c = torch.tensor([0.9, 0.3, -0.2, -0.95], dtype=F64, requires_grad=True)
    m = torch.tensor([0.5, -0.2, 1.0, 0.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(arc_cos_per_sample, (c, m), eps=1e-6, atol=1e-7)
    ends = torch.tensor([1.0, -1.0], requires_grad=True)
    marg = torch.tensor([0.5, 0.5], requires_grad=True)
    arc_cos_per_sample(ends, marg).sum().backward()
    assert torch.isfinite(ends.grad).all() and torch.isfinite(marg.grad).all() and (ends.grad >= 0).all()


# --- ElasticFace ---------------------------------------------------------------------------------


def _elastic(seed: int = 0, **kw: object) -> ElasticFace:
    torch.manual_seed(seed)
    head = ElasticFace(D, C, **kw).double().train()
    head.generator = torch.Generator().manual_seed(11)
    return head


def _draws(seed: int, n: int = N) -> list[float]:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64).tolist()


@pytest.mark.parametrize("sigma", [0.05, 0.6])  # 0.6: some margins drawn below 0
@pytest.mark.parametrize("by_rank", [False, True])
@pytest.mark.parametrize("form", ["arc", "cos"])
def test_elasticface_matches_reference_and_gradients(form: str, by_rank: bool, sigma: float) -> None:
    m = 0.5 if form == "arc" else 0.35
    head = _elastic(form=form, m=m, sigma=sigma, s=10.0, sorted=by_rank)
    for seed, (x, labels) in enumerate((_data(), _near_and_far(head))):
        z = _draws(100 + seed, len(labels))

        def reference(xs, w, ys, z=z):
            margins = elastic_margins(z, m, sigma, true_cosines(xs, w, ys), by_rank)
            return elasticface_loss(xs, w, ys, 10.0, margins, form)

        def reseed(seed=seed) -> None:
            head.generator.manual_seed(100 + seed)

        _against_reference(head, x, labels, reference, reseed)
        _gradcheck(head, x, labels, reseed)
    if sigma == 0.6:
        assert min(elastic_margins(_draws(100), m, sigma, [0.0] * N, False)) < 0


@pytest.mark.parametrize("form", ["arc", "cos"])
def test_elasticface_sigma0_and_evaluation_are_arcface_and_cosface_exactly(form: str) -> None:
    """sigma = 0 in training, and any sigma at evaluation, use the mean margin through the parents'
    own code: the same loss and gradients bit for bit, and the random generator is left alone."""
    torch.manual_seed(0)
    parent = ArcFace(D, C, m=0.5, s=64.0).double() if form == "arc" else CosFace(D, C, m=0.35, s=64.0).double()
    x, labels = _data()
    for sigma, mode in ((0.0, "train"), (0.0, "eval"), (0.05, "eval"), (0.3, "eval")):
        head = ElasticFace(D, C, form=form, sigma=sigma).double()
        _copy_weight(head, parent)
        getattr(head, mode)()
        getattr(parent, mode)()
        state = torch.get_rng_state()
        _same_loss_and_grads(head, parent, x, labels)
        torch.testing.assert_close(head.training_logits(x, labels), parent.training_logits(x, labels), rtol=0, atol=0)
        assert torch.equal(torch.get_rng_state(), state)
        near, ny = _near_and_far(head)
        _same_loss_and_grads(head, parent, near, ny)


def test_elasticface_draws_are_seeded_and_fresh_each_step() -> None:
    """From the global generator by default: torch.manual_seed repeats a step; the head consumes
    exactly N standard normals per training forward; successive steps differ. A head.generator
    takes the draws instead and leaves the global stream alone."""
    x, labels = _data()
    head = ElasticFace(D, C, sigma=0.2).double().train()
    torch.manual_seed(5)
    first, second = head(x, labels), head(x, labels)
    after = torch.randn(3, dtype=F64)
    torch.manual_seed(5)
    assert torch.equal(head(x, labels), first) and not torch.equal(first, second)
    head(x, labels)
    assert torch.equal(torch.randn(3, dtype=F64), after)  # 2 N normals consumed, nothing else
    torch.manual_seed(5)
    z = torch.randn(N, dtype=F64).tolist()
    margins = elastic_margins(z, 0.5, 0.2, [0.0] * N, False)
    _approx(first, elasticface_loss(x.tolist(), _w(head), labels.tolist(), 64.0, margins, "arc"))
    torch.manual_seed(6)
    assert not torch.equal(head(x, labels), first)

    head.generator = torch.Generator().manual_seed(9)
    state = torch.get_rng_state()
    a = head(x, labels)
    head.generator.manual_seed(9)
    assert torch.equal(head(x, labels), a) and torch.equal(torch.get_rng_state(), state)


def test_elasticface_prediction_never_sees_labels_or_margins() -> None:
    """scores and predict are the cosines and their argmax, in training mode too; they draw
    nothing and ignore the labels; evaluation draws nothing either."""
    head = ElasticFace(D, C, sigma=0.3, sorted=True).double().train()
    x, labels = _data(3, n=20)
    state = torch.get_rng_state()
    scores = head.scores(x)
    assert torch.equal(scores, head.cosines(x)) and torch.equal(head.predict(x), scores.argmax(1))
    assert torch.equal(torch.get_rng_state(), state)  # training mode: still no draw
    head(x, labels)
    head(x, (labels + 1) % C)
    assert torch.equal(head.scores(x), scores)  # losses under any labels change no score
    torch.set_rng_state(state)
    head.eval()
    for fn in (head.scores, head.predict):
        fn(x)
    head(x, labels)
    head.training_logits(x, labels)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(head.predict(x), scores.argmax(1))


def test_elasticface_plus_assigns_sorted_draws_by_rank() -> None:
    """The + variant hands out the same draws as the plain one, sorted: the larger cos t_y, the
    smaller the margin (ties keep the batch order)."""
    plain = ElasticFace(D, C, sigma=0.1).train()
    plus = ElasticFace(D, C, sigma=0.1, sorted=True).train()
    cos_t = torch.tensor([0.1, 0.9, 0.5, -0.3, 0.5, 0.7, 0.2])
    plain.generator = torch.Generator().manual_seed(3)
    plus.generator = torch.Generator().manual_seed(3)
    draws, assigned = plain.margins(cos_t), plus.margins(cos_t)
    assert torch.equal(torch.sort(draws).values, torch.sort(assigned).values)
    for i in range(len(cos_t)):
        for j in range(len(cos_t)):
            if cos_t[i] > cos_t[j]:
                assert assigned[i] <= assigned[j]
    assert assigned[2] <= assigned[4]  # the tie: the earlier sample counts as the larger
    assert assigned.tolist() == pytest.approx(elastic_margins(
        ((draws - 0.5) / 0.1).tolist(), 0.5, 0.1, cos_t.tolist(), True), abs=1e-6)


def test_elasticface_public_plus_indexing_is_not_the_assignment_by_rank() -> None:
    """The authors' + step, re-stated: sort the cosines descending (indices idx), sort the draws
    ascending, then margin[idx]: a gather where a scatter is needed, so sample i gets the draw of
    rank idx[i], not of its own rank. With cosines (0.1, 0.9, 0.5) the largest cosine gets the
    largest margin. Ours gives it the smallest."""
    cos_t = torch.tensor([0.1, 0.9, 0.5])
    draws = torch.tensor([0.55, 0.45, 0.50])
    _, idx = torch.sort(cos_t, dim=0, descending=True)
    margin, _ = torch.sort(draws, dim=0)
    public = margin[idx]
    assert public.tolist() == pytest.approx([0.50, 0.55, 0.45])  # cos 0.9 -> 0.55, the largest
    head = ElasticFace(D, C, sigma=0.05, sorted=True).train()
    head.generator = torch.Generator().manual_seed(0)
    ours = head.margins(cos_t)
    assert torch.argsort(ours).tolist() == torch.argsort(-cos_t).tolist()  # largest cos -> smallest margin


def test_elasticface_public_acos_gradient_is_infinite_at_the_ends() -> None:
    """The authors' target cos(acos(c) + m): acos's derivative is infinite at c = +-1, reached
    exactly once the clamp to [-1, 1] bites. Ours is finite there (ArcFace's floored slope)."""
    c = torch.tensor([1.0, -1.0, 0.3], requires_grad=True)
    torch.cos(torch.acos(c.clamp(-1, 1)) + 0.5).sum().backward()
    assert torch.isinf(c.grad[:2]).all() and math.isfinite(c.grad[2])
    head = ElasticFace(2, 3, sigma=0.05).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [1.0, 1.0]], requires_grad=True)
    loss = head(x, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_elasticface_draws_follow_the_normal() -> None:
    head = ElasticFace(D, C, form="cos", sigma=0.05).double().train()
    head.generator = torch.Generator().manual_seed(1)
    margins = head.margins(torch.zeros(40000, dtype=F64))
    assert abs(margins.mean().item() - 0.35) < 4 * 0.05 / 200  # 4 standard errors
    assert margins.std().item() == pytest.approx(0.05, rel=0.02)


@pytest.mark.parametrize(("overrides", "m", "sigma"), [
    ({}, 0.5, 0.05), ({"form": "cos"}, 0.35, 0.05), ({"sorted": True}, 0.5, 0.0175),
    ({"form": "cos", "sorted": True}, 0.35, 0.02), ({"form": "cos", "m": 0.2, "sigma": 0.1}, 0.2, 0.1),
])
def test_elasticface_yaml_defaults_are_the_authors(overrides: dict, m: float, sigma: float) -> None:
    head = _head("elasticface", **overrides)
    assert isinstance(head, ElasticFace) and (head.m, head.sigma, head.s) == (m, sigma, 64.0)
    assert head.form == overrides.get("form", "arc") and head.sorted is overrides.get("sorted", False)


# --- MagFace -------------------------------------------------------------------------------------

MAG = {"l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0}


def _mag(seed: int = 0, **kw: object) -> MagFace:
    torch.manual_seed(seed)
    return MagFace(D, C, **{"s": 16.0, **kw}).double()


def _mag_reference(head: MagFace) -> Callable:
    keys = (head.s, head.l_a, head.u_a, head.l_m, head.u_m, head.lambda_g, head.convention)
    return lambda xs, w, ys: magface_loss(xs, w, ys, *keys)


@pytest.mark.parametrize("convention", ["monotone", "easy"])
def test_magface_matches_reference_and_gradients(convention: str) -> None:
    head = _mag(convention=convention)
    inside = _data(0, norms=(15.0, 100.0))  # the margin and g both move with |x|
    mixed = _data(1, n=8, norms=(3.0, 140.0))  # some below l_a and above u_a: clamped, flat
    norms = mixed[0].norm(dim=1)
    assert (norms < 10).any() and (norms > 110).any()
    near, ny = _near_and_far(head)
    for x, labels in (inside, mixed, (near * 20.0, ny)):
        _against_reference(head, x, labels, _mag_reference(head))
        _gradcheck(head, x, labels)


def test_magface_constant_margin_is_arcface_plus_the_regulariser() -> None:
    """l_m = u_m = m: the cross-entropy is ArcFace's at m (same s), and the loss adds lambda_g
    times the batch mean of g(clamp(|x|, l_a, u_a)); with lambda_g = 0 it is ArcFace."""
    torch.manual_seed(0)
    arc = ArcFace(D, C, m=0.6, s=64.0).double()
    x, labels = _data(2, norms=(5.0, 130.0))
    for lam in (0.0, 35.0):
        head = MagFace(D, C, l_m=0.6, u_m=0.6, lambda_g=lam).double()
        _copy_weight(head, arc)

        def arc_plus_g(xx: torch.Tensor, ll: torch.Tensor, lam: float = lam) -> torch.Tensor:
            a = xx.norm(dim=1).clamp(10.0, 110.0)
            return arc(xx, ll) + lam * (1.0 / a + a / 110.0**2).mean()

        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        head.zero_grad()
        arc.zero_grad()
        got, want = head(xa, labels), arc_plus_g(xb, labels)
        got.backward()
        want.backward()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(head.weight.grad, arc.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(head.training_logits(x, labels), arc.training_logits(x, labels),
                                   rtol=1e-12, atol=1e-12)


def test_magface_regulariser_shape() -> None:
    """Derived: g'(a) = 1/u_a^2 - 1/a^2 < 0 on [l_a, u_a) and 0 at u_a; g''(a) = 2/a^3 > 0; over
    a > 0 g is smallest at u_a (2/u_a): alone it pushes every magnitude up to u_a."""
    head = MagFace(D, C)
    a = torch.linspace(10.0, 110.0, 1001, dtype=F64, requires_grad=True)
    (slope,) = torch.autograd.grad(head.regulariser(a).sum(), a, create_graph=True)
    (curvature,) = torch.autograd.grad(slope.sum(), a)
    torch.testing.assert_close(slope, 1.0 / 110.0**2 - 1.0 / a**2)
    assert (slope[:-1] < 0).all() and abs(slope[-1].item()) < 1e-15 and (curvature > 0).all()
    wide = torch.linspace(1.0, 500.0, 49901, dtype=F64)
    assert wide[head.regulariser(wide).argmin()].item() == pytest.approx(110.0, abs=0.01)
    assert head.regulariser(torch.tensor(110.0, dtype=F64)).item() == pytest.approx(2.0 / 110.0)


def _radial_slope(head: MagFace, direction: torch.Tensor, label: int, r: float) -> float:
    """d loss / d |x| of a one-sample batch x = r u."""
    rr = torch.tensor(r, dtype=F64, requires_grad=True)
    head(rr * direction.view(1, -1), torch.tensor([label])).backward()
    return rr.grad.item()


def _direction(cos_target: float) -> torch.Tensor:
    """A unit vector in C dimensions at cosine cos_target to e_0, equal cosines to the others:
    with W = I, cos t_y = cos_target for class 0."""
    rest = math.sqrt((1 - cos_target**2) / (C - 1))
    return torch.tensor([cos_target] + [rest] * (C - 1), dtype=F64)


def test_magface_lambda_bound_puts_the_optimal_magnitude_inside() -> None:
    """min_lambda_g = s k l_a^2 u_a^2 / (u_a^2 - l_a^2) (22.59 for the defaults, below the paper's
    35). Above it, every sample's loss falls as |x| leaves l_a (the cross-entropy's slope in a is at
    most s k); just below u_a a sample not yet fitted has a rising loss: the optimum is inside.
    At half the bound a hard sample's loss rises from l_a (its optimum sits at l_a)."""
    head = MagFace(C, C, s=64.0, **MAG).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(C, dtype=F64))
    assert head.min_lambda_g == pytest.approx(64 * 0.0035 * 100 * 12100 / 12000)
    assert head.min_lambda_g < 35.0
    for cos_target in (0.99, 0.8, 0.4, 0.0, -0.5, -0.95):
        u = _direction(cos_target)
        assert _radial_slope(head, u, 0, 10.0 + 1e-3) < 0
    assert _radial_slope(head, _direction(0.4), 0, 110.0 - 1e-3) > 0
    head.lambda_g = 0.5 * head.min_lambda_g
    hard = torch.tensor([0.2, 0.98, 0.0, 0.0], dtype=F64)  # t_y + m(l_a) near pi / 2, p_y ~ 0
    assert _radial_slope(head, hard / hard.norm(), 0, 10.0 + 1e-3) > 0


def test_magface_optimal_magnitude_grows_with_the_cosine_where_t_plus_m_is_below_pi_over_2() -> None:
    """The paper's monotonicity, and where it holds. A sample's loss in a has slope
    (1 - p_y) s k sin(t_y + m(a)) + lambda_g g'(a), so a* grows with cos t_y while t_y + m(a*) <= pi/2
    (both 1 - p_y and sin(t_y + m) fall as the sample gets easier) and reaches u_a for very easy
    samples; beyond pi/2 the sine rises as t_y falls, and a* falls with cos t_y instead."""
    head = MagFace(C, C, s=64.0, **MAG).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(C, dtype=F64))
    r = torch.linspace(10.0, 110.0, 4001, dtype=F64)
    labels = torch.zeros(len(r), dtype=torch.long)

    def best(cos_target: float) -> tuple[float, float]:
        """a* on the grid, and t_y + m(a*)."""
        x = r.view(-1, 1) * _direction(cos_target).view(1, -1)
        with torch.no_grad():  # per-sample losses: the batch loss is their mean
            ce = torch.nn.functional.cross_entropy(head.training_logits(x, labels), labels, reduction="none")
            loss = ce + head.lambda_g * head.regulariser(head.magnitudes(x))
        a = r[loss.argmin()]
        return a.item(), math.acos(cos_target) + head.margin(a).item()

    easy = [best(c) for c in (0.6, 0.7, 0.8, 0.9)]
    assert all(angle < math.pi / 2 for _, angle in easy)
    assert 10.0 < easy[0][0] < easy[1][0] < easy[2][0] < easy[3][0] < 110.0, easy
    assert best(0.99)[0] == 110.0  # the clamp: no gradient pushes a beyond u_a
    hard = [best(c) for c in (-0.5, 0.0, 0.4)]
    assert all(angle > math.pi / 2 for _, angle in hard)
    assert hard[0][0] > hard[1][0] > hard[2][0] > 10.0, hard


def test_magface_below_l_a_is_arcface_at_l_m_and_no_gradient_moves_the_norm() -> None:
    torch.manual_seed(0)
    head = MagFace(D, C).double()
    arc = ArcFace(D, C, m=0.45, s=64.0).double()
    _copy_weight(arc, head)
    x, labels = _data(4, norms=(0.1, 9.0))
    xx = x.clone().requires_grad_(True)
    loss = head(xx, labels)
    loss.backward()
    torch.testing.assert_close(loss, arc(x, labels) + 35.0 * (1 / 10 + 10 / 110**2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close((xx.grad * x).sum(dim=1), torch.zeros(N, dtype=F64), rtol=0, atol=1e-12)


def test_magface_easy_convention_drops_the_margin_for_negative_cosines() -> None:
    """``easy`` (the authors' MagLinear default): cos t_y <= 0 keeps the plain cos t_y, so neither
    the margin nor its pull on |x| acts there; elsewhere the monotone target."""
    head = MagFace(C, C, convention="easy").double()
    mono = MagFace(C, C).double()
    with torch.no_grad():
        head.weight.copy_(torch.eye(C, dtype=F64))
        mono.weight.copy_(torch.eye(C, dtype=F64))
    x = 50.0 * torch.stack([_direction(c) for c in (0.6, -0.3, 0.0, 0.2)])
    labels = torch.zeros(4, dtype=torch.long)
    easy, full = head.training_logits(x, labels), mono.training_logits(x, labels)
    cos_t = head.cosines(x)[:, 0]
    torch.testing.assert_close(easy[1:3, 0], 64.0 * cos_t[1:3], rtol=0, atol=0)
    torch.testing.assert_close(easy[[0, 3]], full[[0, 3]], rtol=0, atol=0)
    assert (full[1:3, 0] < easy[1:3, 0]).all()


def test_magface_public_sqrt_has_infinite_and_nan_gradients() -> None:
    """The authors' MagLinear, re-stated: sin = sqrt(1 - cos^2) after clamp(-1, 1), cos(t + m(a)),
    easy margin by torch.where. d/dcos is inf at cos = 1 and NaN at cos = -1 (the unselected
    branch's infinity times 0). Ours, at the same points, is finite."""
    m = torch.tensor([0.5, 0.5, 0.5])
    cos = torch.tensor([1.0, -1.0, 0.3], requires_grad=True)
    c = cos.clamp(-1, 1)
    sin = torch.sqrt(1.0 - torch.pow(c, 2))
    torch.where(c > 0, c * torch.cos(m) - sin * torch.sin(m), c).sum().backward()
    assert cos.grad[0] == math.inf and math.isnan(cos.grad[1]) and math.isfinite(cos.grad[2])
    for convention in ("easy", "monotone"):
        head = MagFace(2, 3, convention=convention)
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        x = torch.tensor([[20.0, 0.0], [-20.0, 0.0], [15.0, 15.0]], requires_grad=True)
        loss = head(x, torch.tensor([0, 0, 1]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_magface_yaml_defaults_are_the_papers() -> None:
    head = _head("magface")
    assert isinstance(head, MagFace) and head.convention == "monotone" and head.s == 64.0
    assert {k: getattr(head, k) for k in MAG} == MAG


# --- shared: numerics, bad keys ------------------------------------------------------------------

NAMES = ["elasticface", "magface"]


@functools.cache
def _config(name: str) -> DictConfig:
    return loss_config(name)


def _head(name: str, dim: int = D, classes: int = C, **overrides: object) -> LossHead:
    cfg = copy.deepcopy(_config(name))
    for key, value in overrides.items():
        cfg[key] = value
    return instantiate(cfg, embedding_dim=dim, num_classes=classes)


VARIANTS = [("elasticface", {}), ("elasticface", {"form": "cos"}), ("elasticface", {"sorted": True, "sigma": 0.5}),
            ("elasticface", {"form": "cos", "sorted": True}), ("magface", {}), ("magface", {"convention": "easy"}),
            ("magface", {"l_a": 1.0, "u_a": 51.0, "u_m": 1.0, "lambda_g": 5.0})]


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_finite_at_the_ends(name: str, overrides: dict) -> None:
    """cos t_y = +-1 exactly, a zero embedding, norms from 0.01 to 400 (both sides of the clamp)."""
    torch.manual_seed(0)
    head = _head(name, dim=2, classes=3, **overrides).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    x = torch.tensor([[3.0, 0.0], [-40.0, 0.0], [0.0, 0.0], [0.5, -1.5], [0.0, 400.0], [0.0, -0.01], [30.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2, 1, 1, 2])
    for mode in ("train", "eval"):
        getattr(head, mode)()
        xx = x.clone().requires_grad_(True)
        head.zero_grad()
        loss = head(xx, labels)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(xx.grad).all() and torch.isfinite(head.weight.grad).all()
        assert torch.isfinite(head.scores(x)).all()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_fp16_zero_and_tiny_embeddings_keep_gradients_finite(name: str, overrides: dict) -> None:
    """As tests/losses/test_numerics.py does for the older heads, at s = 64."""
    torch.manual_seed(0)
    head = _head(name, dim=8, classes=4, **overrides).train()
    emb32 = torch.randn(8, 8) * 20.0
    emb32[0] = 0.0
    emb32[1] = 6e-8
    emb32[2] = 1e-4
    emb = emb32.half().requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.float16):
        loss = head(emb, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize(("name", "overrides"), VARIANTS)
def test_bf16_autocast(name: str, overrides: dict) -> None:
    """The margin math in float32 under bf16 autocast: float32 logits and loss, finite gradients;
    embeddings scaled so MagFace's magnitudes fall inside [l_a, u_a]."""
    torch.manual_seed(0)
    head = _head(name, **overrides).train()
    enc = torch.nn.Linear(6, D)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        emb = 15.0 * enc(torch.randn(16, 6))
        loss = head(emb, torch.arange(16) % C)
        logits = head.training_logits(emb, torch.arange(16) % C)
    assert emb.dtype == torch.bfloat16
    assert loss.dtype == logits.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(enc.weight.grad).all() and enc.weight.grad.abs().sum() > 0


BAD: list[tuple[Callable[[], LossHead], str]] = [
    (lambda: ElasticFace(D, C, form="sphere"), "loss.form=sphere"),
    (lambda: ElasticFace(D, C, m=-0.1), "loss.m=-0.1"),
    (lambda: ElasticFace(D, C, sigma=-0.01), "loss.sigma=-0.01"),
    (lambda: ElasticFace(D, C, sigma=float("inf")), "loss.sigma=inf"),
    (lambda: ElasticFace(D, C, s=0.0), "loss.s=0.0"),
    (lambda: ElasticFace(D, C, sorted="yes"), "loss.sorted=yes"),
    (lambda: MagFace(D, C, l_a=0.0), "loss.l_a=0.0"),
    (lambda: MagFace(D, C, u_a=10.0), "loss.u_a=10.0"),
    (lambda: MagFace(D, C, l_m=-0.1), "loss.l_m=-0.1"),
    (lambda: MagFace(D, C, u_m=0.4), "loss.u_m=0.4"),
    (lambda: MagFace(D, C, lambda_g=-1.0), "loss.lambda_g=-1.0"),
    (lambda: MagFace(D, C, s=float("nan")), "loss.s=nan"),
    (lambda: MagFace(D, C, convention="fallback"), "loss.convention=fallback"),
]


@pytest.mark.parametrize(("make", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_key_is_one_line_naming_key_and_head(make: Callable[[], LossHead], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.startswith(expected) and " must be " in message, message
    assert any(f"invalid for {n}:" in message for n in NAMES), message


@pytest.mark.parametrize(("overrides", "expected"), [
    (["loss=magface", "loss.u_a=5"], "loss.u_a=5 is invalid for magface: u_a must be a finite number > 10"),
    (["loss=magface", "loss.convention=fallback"], "loss.convention=fallback is invalid for magface"),
    (["loss=elasticface", "loss.form=sphere"], "loss.form=sphere is invalid for elasticface"),
    (["loss=elasticface", "loss.sigma=-1"], "loss.sigma=-1 is invalid for elasticface: sigma must be"),
])
def test_bad_key_from_the_command_line_is_one_line(tmp_path, overrides: list[str], expected: str) -> None:
    """Through the config pass, as ``python -m src.train loss=magface loss.u_a=5`` meets it (before
    any data is read: the data folder here is empty)."""
    from src.training.validate import check_config
    from tests.conftest import TINY, compose_config

    with pytest.raises(ConfigError) as info:
        check_config(compose_config([f"data.root={tmp_path}", "data.download=false", *TINY, *overrides]))
    message = str(info.value)
    assert "\n" not in message and expected in message, message
