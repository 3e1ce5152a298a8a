"""Each head's loss against the independent per-sample float64 reference, and gradcheck."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from loss_reference import (
    arcface_loss,
    center_loss,
    combined_loss,
    contrastive_loss,
    cosface_loss,
    mhe_energy,
    modified_softmax_loss,
    normface_loss,
    softmax_loss,
    sphereface_lambda,
    sphereface_loss,
    triplet_loss,
)

from src.losses.arcface import ArcFace
from src.losses.base import LossHead
from src.losses.center import CenterLoss
from src.losses.combined import CombinedMargin
from src.losses.contrastive import Contrastive
from src.losses.cosface import CosFace
from src.losses.modified_softmax import ModifiedSoftmax
from src.losses.normface import NormFace
from src.losses.softmax import Softmax
from src.losses.sphereface import SphereFace
from src.losses.sphereface_plus import SphereFacePlus
from src.losses.triplet import Triplet

D, C, N = 5, 4, 7


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64) * 2.0
    labels = torch.tensor([0, 1, 2, 3, 1, 0, 2])
    return x, labels


def _w(head: LossHead) -> list[list[float]]:
    return head.weight.detach().tolist()


# (name, constructor, reference(head, x_list, labels_list) -> float)
Case = tuple[str, Callable[[], LossHead], Callable[[LossHead, list, list], float]]

CASES: list[Case] = [
    ("softmax", lambda: Softmax(D, C), lambda h, x, y: softmax_loss(x, _w(h), h.bias.tolist(), y)),
    (
        "softmax_smoothed",
        lambda: Softmax(D, C, label_smoothing=0.2),
        lambda h, x, y: softmax_loss(x, _w(h), h.bias.tolist(), y, label_smoothing=0.2),
    ),
    ("cosface", lambda: CosFace(D, C, m=0.35, s=30.0), lambda h, x, y: cosface_loss(x, _w(h), y, 0.35, 30.0)),
    (
        "cosface_m0.7",
        lambda: CosFace(D, C, m=0.7, s=8.0),
        lambda h, x, y: cosface_loss(x, _w(h), y, 0.7, 8.0),
    ),
]
for _m in (0.1, 0.5, 1.0, 2.0, 4.0, 6.0):
    for _conv in ("monotone", "fallback"):
        CASES.append(
            (
                f"arcface_m{_m}_{_conv}",
                lambda m=_m, c=_conv: ArcFace(D, C, m=m, s=10.0, convention=c),
                lambda h, x, y, m=_m, c=_conv: arcface_loss(x, _w(h), y, m, 10.0, c),
            )
        )
for _m in range(1, 7):
    CASES.append(
        (
            f"sphereface_m{_m}",
            lambda m=_m: SphereFace(D, C, m=m),
            lambda h, x, y, m=_m: sphereface_loss(x, _w(h), y, m, sphereface_lambda(0, 1000.0, 0.12, 1.0, 5.0)),
        )
    )
CASES += [
    (
        "sphereface_pure_psi",
        lambda: SphereFace(D, C, m=3, anneal=False, lambda_min=0.0),
        lambda h, x, y: sphereface_loss(x, _w(h), y, 3, 0.0),
    ),
    (
        "sphereface_norm",
        lambda: SphereFace(D, C, m=4, anneal=False, lambda_min=0.5, normalize_features=True, s=12.0),
        lambda h, x, y: sphereface_loss(x, _w(h), y, 4, 0.5, s=12.0),
    ),
]


def _center_head() -> CenterLoss:
    head = CenterLoss(D, C, lambda_c=0.3)
    with torch.no_grad():
        head.centers.normal_()
        head.bias.normal_()
    return head


def _plus_ref(h: LossHead, x: list, y: list, alpha: float, power: float) -> float:
    lam = sphereface_lambda(0, 1000.0, 0.12, 1.0, 5.0)
    return sphereface_loss(x, _w(h), y, 4, lam) + alpha * mhe_energy(_w(h), power)


def _metric_ref(h, x, y, fn, m, mining, sw) -> float:
    ce = softmax_loss(x, _w(h), h.bias.tolist(), y) if sw else 0.0
    return fn(x, y, m, mining) + sw * ce


CASES += [
    ("modified_softmax", lambda: ModifiedSoftmax(D, C), lambda h, x, y: modified_softmax_loss(x, _w(h), y)),
    ("normface", lambda: NormFace(D, C, s=16.0), lambda h, x, y: normface_loss(x, _w(h), y, 16.0)),
    (
        "combined_default",
        lambda: CombinedMargin(D, C),
        lambda h, x, y: combined_loss(x, _w(h), y, 1.0, 0.3, 0.2, 30.0),
    ),
    (
        "combined_big",
        lambda: CombinedMargin(D, C, m1=2.5, m2=1.5, m3=0.1, s=5.0),
        lambda h, x, y: combined_loss(x, _w(h), y, 2.5, 1.5, 0.1, 5.0),
    ),
    (
        "center",
        _center_head,
        lambda h, x, y: center_loss(x, _w(h), h.bias.tolist(), h.centers.tolist(), y, 0.3),
    ),
    ("sphereface_plus", lambda: SphereFacePlus(D, C, alpha=0.7), lambda h, x, y: _plus_ref(h, x, y, 0.7, 1.0)),
    (
        "sphereface_plus_log",
        lambda: SphereFacePlus(D, C, alpha=2.0, mhe_power=0.0),
        lambda h, x, y: _plus_ref(h, x, y, 2.0, 0.0),
    ),
    (
        "sphereface_plus_p2",
        lambda: SphereFacePlus(D, C, alpha=0.5, mhe_power=2.0),
        lambda h, x, y: _plus_ref(h, x, y, 0.5, 2.0),
    ),
]
for _mining in ("all", "hard"):
    for _sw in (0.0, 0.5):
        CASES.append(
            (
                f"contrastive_{_mining}_sw{_sw}",
                lambda mi=_mining, sw=_sw: Contrastive(D, C, m=1.2, mining=mi, softmax_weight=sw),
                lambda h, x, y, mi=_mining, sw=_sw: _metric_ref(h, x, y, contrastive_loss, 1.2, mi, sw),
            )
        )
for _mining in ("all", "hard", "semihard"):
    for _sw in (0.0, 0.5):
        CASES.append(
            (
                f"triplet_{_mining}_sw{_sw}",
                lambda mi=_mining, sw=_sw: Triplet(D, C, m=0.6, mining=mi, softmax_weight=sw),
                lambda h, x, y, mi=_mining, sw=_sw: _metric_ref(h, x, y, triplet_loss, 0.6, mi, sw),
            )
        )

IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_matches_per_sample_reference(case: Case) -> None:
    _, make, ref = case
    torch.manual_seed(1)
    head = make().double().eval()
    x, labels = _data()
    got = head(x, labels)
    want = ref(head, x.tolist(), labels.tolist())
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case: Case) -> None:
    _, make, _ = case
    torch.manual_seed(2)
    head = make().double().eval()
    x, labels = _data(3)
    x.requires_grad_(True)
    weight = head.weight.detach().clone().requires_grad_(True)

    def loss(xx: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
        # Route the weight through the functional path so gradcheck sees it as an input.
        return torch.func.functional_call(head, {"weight": ww}, (xx, labels))

    assert torch.autograd.gradcheck(loss, (x, weight), eps=1e-6, atol=1e-5, rtol=1e-4)
