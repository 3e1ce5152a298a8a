"""Audit only: the reference study's ArcFace layer (commit 87d005d, which produced its 94.28%).

Per class j: phi_j = cos(t_j + m) where cos t_j > cos(pi - m), else cos t_j - m sin(pi - m)
(its ``easy_margin=False``; ``easy_margin=True``, HEAD's default, keeps cos t_j where cos t_j <= 0).
Mixed in with the raw label at 87d005d (a row with label k gets s (k phi_j + (1 - k) cos t_j)),
with a one-hot broadcast at HEAD (``mixing``). The script put an L2 penalty of 1e-4 on W.
"""

from __future__ import annotations

import math

import torch

from src.config.checks import check_bool, check_number
from src.losses.base import at_least_float32, no_autocast
from src.losses.margin import arc_cos_plus
from src.losses.reference_protocol import ReferenceHead


class ReferenceArcFace(ReferenceHead):
    loss_name = "reference_arcface"

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.5, s: float = 30.0,
                 easy_margin: bool = False, mixing: str = "raw_label", weight_l2: float = 1e-4) -> None:
        super().__init__(embedding_dim, num_classes, s=s, mixing=mixing, weight_l2=weight_l2)
        self.m = check_number("loss.m", m, low=0.0, owner="reference_arcface")
        self.easy_margin = check_bool("loss.easy_margin", easy_margin, owner="reference_arcface")

    def target_cos(self, cos: torch.Tensor) -> torch.Tensor:
        with no_autocast(cos):
            c = at_least_float32(cos)
            # arc_cos_plus floors sin t away from 0 only for a finite gradient at |cos| = 1.
            phi = arc_cos_plus(c, self.m)
            if self.easy_margin:
                return torch.where(c > 0, phi, c)
            return torch.where(c > math.cos(math.pi - self.m), phi, c - math.sin(math.pi - self.m) * self.m)
