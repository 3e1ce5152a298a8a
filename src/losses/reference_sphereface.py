"""Audit only: the reference study's SphereFace layer (commit b0149bd, which produced its 95.32%).

Target cos(m t) with t = acos(cos clipped to [-1 + eps, 1 - eps]): no psi, no lambda, m may be
any real. Mixed in with the raw label (``src.losses.reference_protocol``), so a row with label k
gets s ((1 - k) cos t_j + k cos(m t_j)) for every class j. Not the A-Softmax of
``src.losses.sphereface``; see docs/reference_protocol.md.
"""

from __future__ import annotations

import torch

from src.config.checks import check_number
from src.losses.base import at_least_float32, no_autocast
from src.losses.reference_protocol import KERAS_EPSILON, ReferenceHead


class ReferenceSphereFace(ReferenceHead):
    loss_name = "reference_sphereface"

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 2.0, s: float = 30.0,
                 mixing: str = "raw_label", weight_l2: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes, s=s, mixing=mixing, weight_l2=weight_l2)
        self.m = check_number("loss.m", m, low=0.0, low_open=True, owner="reference_sphereface")

    def target_cos(self, cos: torch.Tensor) -> torch.Tensor:
        with no_autocast(cos):
            c = at_least_float32(cos).clamp(-1.0 + KERAS_EPSILON, 1.0 - KERAS_EPSILON)
            return torch.cos(self.m * torch.acos(c))
