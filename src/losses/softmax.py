"""Plain softmax cross-entropy: the baseline last layer, logits = W x + b."""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_number
from src.losses.base import LossHead, at_least_float32, no_autocast


class Softmax(LossHead):
    """logits = W x + b; the scores are the same logits (no margin, no normalisation).

    ``label_smoothing`` (0 <= eps <= 0.99) spreads eps of each target's probability mass evenly over
    all classes (Szegedy et al. 2016); 0 is the plain cross-entropy of the reference study.
    """

    def __init__(self, embedding_dim: int, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.bias = nn.Parameter(torch.zeros(self.num_classes))
        self.label_smoothing = check_number("loss.label_smoothing", label_smoothing, low=0.0, high=0.99,
                                            owner="softmax")

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        # float32 with autocast off, like every head: the logits feed a cross-entropy.
        with no_autocast(embeddings):
            x = at_least_float32(embeddings)
            return nn.functional.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.scores(embeddings)
