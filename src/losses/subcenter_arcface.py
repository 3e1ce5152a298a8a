"""Sub-center ArcFace (Deng et al. 2020, "Sub-center ArcFace: Boosting Face Recognition by
Large-scale Noisy Web Faces"): K sub-centres per class, the class cosine is the largest,

    cos t_j = max_k cos(x, w_{j,k}),

and the target is ArcFace's (``s Phi(t_y + m)``, or the fallback rule; see src/losses/arcface.py).
A sample with an ambiguous or wrong label can sit near a non-dominant sub-centre of its labelled
class instead of being dragged to the class's main mode.

Optional outlier drop (``drop_threshold_deg``): the paper, after training with K sub-centres,
drops the samples farther than 75 degrees from their class's dominant sub-centre (the one
nearest to most of the class's samples) and retrains. Here the rule is applied online, per
training batch, as pytorch-metric-learning's ``SubCenterArcFaceLoss.get_outliers`` decides it:
the dominant sub-centre of a class is the one that is nearest for most of the class's samples in
the batch (ties: the lower index), and a sample whose cosine to it is below cos(threshold) is left
out of the batch mean. It starts after ``drop_start_step`` training-mode forward calls, because a
fresh head has every sample near 90 degrees from every sub-centre and would drop them all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.config.checks import check_int, check_number
from src.losses.arcface import ArcFace
from src.losses.base import at_least_float32, cosine_matrix


class SubCenterArcFace(ArcFace):
    """ArcFace on the per-class maximum over K sub-centres; ``weight`` is (C K, D), class-major.
    Scores are the (max over sub-centres) cosines."""

    loss_name = "subcenter_arcface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.5,
        s: float = 64.0,
        convention: str = "monotone",
        sub_centers: int = 3,
        drop_threshold_deg: float | None = None,
        drop_start_step: int = 0,
    ) -> None:
        name = self.loss_name
        k = check_int("loss.sub_centers", sub_centers, 1, whole_floats=True, owner=name)
        super().__init__(embedding_dim, num_classes, m=m, s=s, convention=convention, sub_centers=k)
        self.drop_threshold_deg = check_number(
            "loss.drop_threshold_deg", drop_threshold_deg, low=0.0, high=180.0, low_open=True, null=True, owner=name
        )
        self.drop_start_step = check_int("loss.drop_start_step", drop_start_step, 0, whole_floats=True, owner=name)
        # Training-mode forward calls so far (checkpointed, so a resumed run keeps its schedule).
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def outliers(self, embeddings: torch.Tensor, labels: torch.Tensor, threshold_deg: float = 75.0) -> torch.Tensor:
        """(N,) bool: samples more than ``threshold_deg`` from their class's dominant sub-centre,
        the sub-centre nearest to the most samples of that class among ``embeddings``."""
        n, c, k = len(labels), self.num_classes, self.sub_centers
        own = cosine_matrix(embeddings, self.weight).view(n, c, k)[torch.arange(n, device=labels.device), labels]
        nearest = own.argmax(dim=1)
        votes = torch.zeros(c, k, dtype=torch.long, device=labels.device)
        votes.index_put_((labels, nearest), torch.ones_like(labels), accumulate=True)
        dominant = votes.argmax(dim=1)[labels]  # first maximum on ties
        cos_dominant = own.gather(1, dominant.view(-1, 1)).squeeze(1)
        return cos_dominant < math.cos(math.radians(threshold_deg))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = None
        if self.training:
            if self.drop_threshold_deg is not None and int(self.step) >= self.drop_start_step:
                keep = ~self.outliers(embeddings, labels, self.drop_threshold_deg)
            self.step += 1
        if keep is None:
            return super().forward(embeddings, labels)
        logits = at_least_float32(self.training_logits(embeddings, labels))
        losses = nn.functional.cross_entropy(logits, labels, reduction="none")
        # Mean over the kept samples; an all-dropped batch gives 0 with a graph (no gradient).
        return (losses * keep.to(losses.dtype)).sum() / keep.sum().clamp_min(1)
