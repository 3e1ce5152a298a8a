"""CosFace / large margin cosine loss (Wang et al. 2018): target logit s (cos t_y - m)."""

from __future__ import annotations

import torch

from src.config.checks import check_number
from src.losses.base import CosineMarginHead


class CosFace(CosineMarginHead):
    """Non-target logits s cos t_j, target logit s (cos t_y - m); scores are the cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.35, s: float = 30.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_number("loss.m", m, low=0.0, owner="cosface")
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner="cosface")

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        return cos_t - self.m
