"""Combined margin (the InsightFace family that contains SphereFace, ArcFace and CosFace):

    target logit = s (Phi(m1 t_y + m2) - m3),   non-target logits s cos t_j,

with the same monotone extension Phi(a) = (-1)^k cos a - 2k, k = floor(a / pi), as ArcFace's
default convention, so the target is decreasing in t_y for every m1 > 0, m2 >= 0. m1 = 1,
m2 = 0, m3 = 0 is NormFace; (1, m, 0) is ArcFace; (1, 0, m) is CosFace; (m, 0, 0) with integer
m is SphereFace's psi with lambda = 0 and normalised features.

m1 may be any positive real, so t_y = acos(cos t_y) is used directly, with the cosine clamped
to [-1 + 1e-7, 1 - 1e-7] to keep the gradient of acos finite at +-1."""

from __future__ import annotations

import torch

from src.config.checks import check_number
from src.losses.base import CosineMarginHead
from src.losses.margin import combined_margin_cos


class CombinedMargin(CosineMarginHead):
    """s (Phi(m1 t_y + m2) - m3) for the target; scores are the cosines."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m1: float = 1.0,
        m2: float = 0.3,
        m3: float = 0.2,
        s: float = 30.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m1 = check_number("loss.m1", m1, low=0.0, low_open=True, owner="combined")
        self.m2 = check_number("loss.m2", m2, low=0.0, owner="combined")
        self.m3 = check_number("loss.m3", m3, low=0.0, owner="combined")
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner="combined")

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        return combined_margin_cos(cos_t, self.m1, self.m2) - self.m3
