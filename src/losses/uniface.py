"""UniFace (Zhou et al. 2023, "UniFace: Unified Cross-Entropy Loss for Deep Face Recognition";
authors' code CVI-SZU/UniFace, head.py ``Unified_Cross_Entropy_Loss``). Each class is its own
binary problem against one shared, learned threshold b, so that every positive similarity is to
exceed every negative one:

    loss_i = log(1 + e^{-(s (cos t_y - m) - b)}) + lambda sum_{j != y} log(1 + e^{s cos t_j - b})

averaged over the batch (summed over classes). b is an ``nn.Parameter`` (trained, checkpointed),
initialised to log(10 C) as the code does (its log(C r 10) with the partial-FC ratio r = 1), or
to ``bias_init``. log(1 + e^u) is computed as softplus(u): exact and finite for every u. The
code instead clamps u to [-s, s] before exp: that keeps float32 finite but changes the value
and zeroes the gradient of every term beyond the clamp (e.g. a true-class cosine below about
-0.5 at s = 64), and log(1 + exp(u)) itself overflows in float16 from u ~ 11.1.

Scores are the cosines (their argmax; b is shared by all classes, so it cannot change it).
``training_logits`` are the binary logits s cos t_j - b with s (cos t_y - m) - b for the target.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.config.checks import check_number
from src.losses.base import LossHead, no_autocast, replace_target


class UniFace(LossHead):
    """Unified cross-entropy (one-vs-all logistic terms with a shared learned bias b)."""

    loss_name = "uniface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.4,
        s: float = 64.0,
        lambda_neg: float = 1.0,
        bias_init: float | None = None,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.m = check_number("loss.m", m, low=0.0, owner=name)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.lambda_neg = check_number("loss.lambda_neg", lambda_neg, low=0.0, owner=name)
        b0 = check_number("loss.bias_init", bias_init, null=True, owner=name)
        b0 = math.log(10.0 * self.num_classes) if b0 is None else b0
        self.bias = nn.Parameter(torch.full((1,), b0))

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.cosines(embeddings)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings)
        with no_autocast(cos):
            b = self.bias.to(cos.dtype)
            target = cos.gather(1, labels.view(-1, 1)).squeeze(1) - self.m
            return self.s * replace_target(cos, labels, target) - b

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.training_logits(embeddings, labels)
        with no_autocast(logits):
            positive = nn.functional.one_hot(labels, self.num_classes).to(torch.bool)
            # softplus(-u) = log(1 + e^{-u}) for the positive, lambda softplus(u) for the negatives.
            terms = torch.where(positive, nn.functional.softplus(-logits),
                                self.lambda_neg * nn.functional.softplus(logits))
            return terms.sum(dim=1).mean()
