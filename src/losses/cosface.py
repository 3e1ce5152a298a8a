"""CosFace / large margin cosine loss (Wang et al. 2018): target logit s (cos t_y - m)."""

from __future__ import annotations

import torch

from src.losses.base import LossHead, check_real, cosine_matrix, replace_target


class CosFace(LossHead):
    """Non-target logits s cos t_j, target logit s (cos t_y - m); scores are the cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, m: float = 0.35, s: float = 30.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.m = check_real("cosface", "m", m, low=0.0)
        self.s = check_real("cosface", "s", s, low=0.0, low_open=True)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return cosine_matrix(embeddings, self.weight)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = cosine_matrix(embeddings, self.weight)
        target = cos.gather(1, labels.view(-1, 1)).squeeze(1) - self.m
        return self.s * replace_target(cos, labels, target)
