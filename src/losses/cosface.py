"""CosFace / large margin cosine loss (Wang et al. 2018): target logit s (cos t_y - m)."""

from __future__ import annotations

import torch

from src.losses.base import CosineMarginHead, check_real


class CosFace(CosineMarginHead):
    """Non-target logits s cos t_j, target logit s (cos t_y - m); scores are the cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.35, s: float = 30.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("cosface", "m", m, low=0.0)
        self.s = check_real("cosface", "s", s, low=0.0, low_open=True)

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        return cos_t - self.m
