"""Normalized softmax / NormFace (Wang et al. 2017): logit_j = s cos t_j.

Both features and weights are normalised, so the logits are bounded by s, and NormFace shows the
loss then cannot fall below log(1 + (C - 1) exp(-s C / (C - 1))) (reached with the class weights
on a regular simplex): a small s keeps the loss from converging. With C = 10 that floor is 0.034
for s = 5 and 2e-7 for the default s = 16. NormFace is ArcFace / CosFace with m = 0, the
reference point for their margins."""

from __future__ import annotations

from src.config.checks import check_number
from src.losses.base import CosineMarginHead


class NormFace(CosineMarginHead):
    """logit_j = s cos t_j; scores are the cosines."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 16.0) -> None:
        super().__init__(embedding_dim, num_classes)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner="normface")

    # target_cos: the base class's identity (no margin).
