"""Shared machinery of the metric-learning heads (contrastive, triplet).

These losses act on pairs / triplets of embeddings inside the batch, not on class weights, so
prediction needs class prototypes: the head keeps, per class, a running sum of the training
embeddings' unit vectors and a running count (persistent buffers ``center_sum`` (C x D) and
``center_count`` (C), updated in training-mode forward calls with detached embeddings, saved in
checkpoints). Center = sum / count; ``scores`` are the cosines to the centers, so prediction is
the nearest class center and never sees a label (a class with no training embedding yet scores
-2, below every cosine).

``center_decay`` < 1 multiplies sum and count by the decay before each update: an exponentially
weighted mean over roughly 1 / (1 - decay) recent batches, so embeddings from the first epochs
(of a barely trained network) do not stay in the centers forever. 1.0 gives the plain mean over
every training embedding seen.

Embeddings are L2-normalised before the metric loss, so distances lie in [0, 2] and the margin
``m`` has the same meaning at any feature scale.

``weight`` (C x D) and ``bias`` form an ordinary softmax layer W x + b whose cross-entropy is
added with weight ``softmax_weight`` (0 = off: then ``weight`` gets no gradient, and DDP needs
``find_unused_parameters``). ``training_logits`` returns that layer's logits (label-free). With
``softmax_weight=0`` that layer is never trained, so the leakage audit (argmax of the training
logits) would score random weights: ``has_leaky_audit`` is then False and the model reports no
``test/acc_leaky`` at all.
"""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_choice, check_number
from src.losses.base import LossHead, at_least_float32, cosine_matrix, no_autocast, unit

# Floor under squared distances before a square root: sqrt has an infinite gradient at 0
# (identical or duplicated embeddings).
DIST_EPS = 1e-12
# Score of a class without a center (below any cosine).
UNSEEN_SCORE = -2.0


class MetricLossHead(LossHead):
    """Base for in-batch metric losses; subclasses implement ``metric_loss(unit_emb, labels)``."""

    loss_name = "metric"
    minings: tuple[str, ...] = ("all", "hard")

    # Each loss's own defaults (conf/loss/<name>.yaml states them too).
    default_m: float
    default_mining: str

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float | None = None,
        mining: str | None = None,
        softmax_weight: float = 0.0,
        center_decay: float = 0.99,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.m = check_number("loss.m", self.default_m if m is None else m, low=0.0, owner=name)
        self.mining = check_choice("loss.mining", self.default_mining if mining is None else mining, self.minings,
                                   owner=name)
        self.softmax_weight = check_number("loss.softmax_weight", softmax_weight, low=0.0, owner=name)
        self.center_decay = check_number("loss.center_decay", center_decay, low=0.0, low_open=True, high=1.0,
                                         owner=name)
        self.bias = nn.Parameter(torch.zeros(self.num_classes))
        self.register_buffer("center_sum", torch.zeros(self.num_classes, self.embedding_dim))
        self.register_buffer("center_count", torch.zeros(self.num_classes))

    @property
    def has_leaky_audit(self) -> bool:
        """Whether ``training_logits`` come from a trained layer (only with a softmax term)."""
        return self.softmax_weight > 0

    # -- prediction --------------------------------------------------------------------------
    def centers(self) -> torch.Tensor:
        """(C, D) mean training unit-embedding per class (zero rows for unseen classes)."""
        return self.center_sum / self.center_count.clamp_min(1.0).unsqueeze(1)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        # The cosine does not depend on the sum's length, so the sum serves as the center.
        cos = cosine_matrix(embeddings, self.center_sum)
        # A class never seen in training has no center: score it below every cosine (-2, not
        # -inf, so softmax-based metrics stay finite) so that it is never the nearest.
        seen = (self.center_count > 0).to(cos.device)
        return torch.where(seen, cos, torch.full_like(cos, UNSEEN_SCORE))

    @torch.no_grad()
    def update_centers(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        u = unit(at_least_float32(embeddings.detach())).to(self.center_sum.dtype)
        self.center_sum.mul_(self.center_decay).index_add_(0, labels, u)
        ones = torch.ones_like(labels, dtype=self.center_count.dtype)
        self.center_count.mul_(self.center_decay).index_add_(0, labels, ones)

    # -- training ------------------------------------------------------------------------------
    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with no_autocast(embeddings):
            x = at_least_float32(embeddings)
            return nn.functional.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))

    def metric_loss(self, u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with no_autocast(embeddings):
            loss = self.metric_loss(unit(at_least_float32(embeddings)), labels)
        if self.softmax_weight > 0:
            ce = nn.functional.cross_entropy(self.training_logits(embeddings, labels), labels)
            loss = loss + self.softmax_weight * ce
        if self.training:
            self.update_centers(embeddings, labels)
        return loss


def squared_distances(u: torch.Tensor) -> torch.Tensor:
    """(N, N) squared Euclidean distances between unit rows: |a - b|^2 = 2 - 2 a.b >= 0."""
    return (2.0 - 2.0 * (u @ u.t())).clamp_min(0.0)


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) (N, N) masks: same label and i != j; different label."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(labels.numel(), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def mean_or_zero(terms: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Mean of the selected terms; a graph-connected zero when the batch has none (e.g. no
    positive pair), so backward still works."""
    return terms.mean() if terms.numel() > 0 else u.sum() * 0.0
