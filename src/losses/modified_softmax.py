"""Modified softmax (Liu et al. 2017, SphereFace paper): |w_j| = 1, b = 0, logit_j = |x| cos t_j.

It is A-Softmax without the margin (SphereFace with m = 1 and lambda = 0 gives the same logits),
isolating the effect of normalising the weights and dropping the bias."""

from __future__ import annotations

import torch

from src.losses.base import LossHead, at_least_float32, no_autocast, unit


class ModifiedSoftmax(LossHead):
    """logit_j = w_j . x / |w_j| = |x| cos t_j; scores are the same logits."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__(embedding_dim, num_classes)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        with no_autocast(embeddings):
            x = at_least_float32(embeddings)
            return x @ unit(self.weight.to(x.dtype)).t()

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.scores(embeddings)
