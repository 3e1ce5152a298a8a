"""Parameter validation: one-line ValueError naming key, value and the allowed range."""

from __future__ import annotations

import math

import pytest

from src.losses.arcface import ArcFace
from src.losses.center import CenterLoss
from src.losses.combined import CombinedMargin
from src.losses.contrastive import Contrastive
from src.losses.cosface import CosFace
from src.losses.normface import NormFace
from src.losses.softmax import Softmax
from src.losses.sphereface import SphereFace
from src.losses.sphereface_plus import SphereFacePlus
from src.losses.triplet import Triplet

BAD = [
    (Softmax, "label_smoothing", -0.1, ">= 0 and <= 0.99"),
    (Softmax, "label_smoothing", 1.0, ">= 0 and <= 0.99"),
    (SphereFace, "m", 2.5, "integer >= 1"),
    (SphereFace, "m", 0, "integer >= 1"),
    (SphereFace, "m", -4, "integer >= 1"),
    (SphereFace, "m", "four", "integer >= 1"),
    (SphereFace, "m", True, "integer >= 1"),
    (SphereFace, "lambda_min", -1.0, ">= 0"),
    (SphereFace, "lambda_base", math.nan, ">= 0"),
    (SphereFace, "lambda_gamma", -0.1, ">= 0"),
    (SphereFace, "lambda_power", -1, ">= 0"),
    (SphereFace, "s", 0.0, "> 0"),
    (SphereFace, "anneal", "yes", "true or false"),
    (SphereFace, "normalize_features", 1, "true or false"),
    (ArcFace, "m", -0.1, ">= 0"),
    (ArcFace, "m", math.inf, ">= 0"),
    (ArcFace, "s", -30.0, "> 0"),
    (ArcFace, "convention", "easy", "monotone, fallback"),
    (CosFace, "m", -0.35, ">= 0"),
    (CosFace, "s", 0, "> 0"),
    (NormFace, "s", -1.0, "> 0"),
    (CombinedMargin, "m1", 0.0, "> 0"),
    (CombinedMargin, "m2", -0.3, ">= 0"),
    (CombinedMargin, "m3", -0.2, ">= 0"),
    (CombinedMargin, "s", "big", "> 0"),
    (CenterLoss, "lambda_c", -0.003, ">= 0"),
    (SphereFacePlus, "alpha", -1.0, ">= 0"),
    (SphereFacePlus, "mhe_power", -1.0, ">= 0"),
    (SphereFacePlus, "m", 1.5, "integer >= 1"),
    (Contrastive, "m", -1.0, ">= 0"),
    (Contrastive, "mining", "semihard", "all, hard"),
    (Contrastive, "softmax_weight", -0.5, ">= 0"),
    (Triplet, "mining", "random", "all, hard, semihard"),
    (Triplet, "center_decay", 0.0, "> 0 and <= 1"),
    (Triplet, "center_decay", 1.5, "> 0 and <= 1"),
]


@pytest.mark.parametrize(("cls", "key", "value", "rule"), BAD, ids=[f"{c.__name__}-{k}-{v}" for c, k, v, _ in BAD])
def test_bad_value_raises_one_line_error(cls, key, value, rule) -> None:
    with pytest.raises(ValueError) as info:
        cls(4, 3, **{key: value})
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"loss.{key}={value} is invalid for ")
    assert rule in msg


def test_error_names_the_loss() -> None:
    with pytest.raises(ValueError, match="invalid for sphereface_plus: alpha"):
        SphereFacePlus(4, 3, alpha=-1)
    with pytest.raises(ValueError, match="invalid for triplet: mining must be one of all, hard, semihard"):
        Triplet(4, 3, mining="x")


def test_exact_message_for_sphereface_m() -> None:
    with pytest.raises(ValueError, match=r"^loss\.m=2\.5 is invalid for sphereface: m must be an integer >= 1$"):
        SphereFace(4, 3, m=2.5)


@pytest.mark.parametrize("m", [1, 2.0, 4, 6, 8])
def test_sphereface_accepts_integral_m(m) -> None:
    head = SphereFace(4, 3, m=m)
    assert head.m == int(m) and isinstance(head.m, int)


@pytest.mark.parametrize("m", [0.0, 0.5, 2.0, 4.0, 6.0, 9.0])
def test_arcface_accepts_study_margins(m: float) -> None:
    assert ArcFace(4, 3, m=m).m == m


def test_base_rejects_bad_dims() -> None:
    with pytest.raises(ValueError, match="embedding_dim=0"):
        CosFace(0, 3)
    with pytest.raises(ValueError, match="num_classes=1"):
        CosFace(4, 1)
