"""Center loss (Wen et al. 2016): softmax cross-entropy + (lambda_c / 2) |x - c_y|^2.

The centers c (C x D) are an ``nn.Parameter`` learned by the same optimiser (the paper updates
them with a separate rate alpha; with Adam/Adadelta the gradient route is the common
re-implementation). The pull term is averaged over the batch, as in the authors' Caffe layer
(there lambda = 0.003 for faces). The softmax part is a plain W x + b layer; scores are its
logits."""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_number
from src.losses.base import at_least_float32, no_autocast
from src.losses.softmax import Softmax


class CenterLoss(Softmax):
    """Softmax logits W x + b plus the center pull; ``centers`` is saved with checkpoints."""

    def __init__(self, embedding_dim: int, num_classes: int, lambda_c: float = 0.003) -> None:
        super().__init__(embedding_dim, num_classes)
        self.lambda_c = check_number("loss.lambda_c", lambda_c, low=0.0, owner="center")
        self.centers = nn.Parameter(torch.zeros(self.num_classes, self.embedding_dim))

    def center_term(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(lambda_c / 2) * mean_i |x_i - c_{y_i}|^2, in float32 at least."""
        with no_autocast(embeddings):
            x = at_least_float32(embeddings)
            diff = x - self.centers.to(x.dtype)[labels]
            return 0.5 * self.lambda_c * diff.pow(2).sum(dim=1).mean()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(self.training_logits(embeddings, labels), labels)
        return ce + self.center_term(embeddings, labels)
