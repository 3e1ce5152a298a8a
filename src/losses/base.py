"""The one interface every loss head implements.

A loss head owns the last layer (the class weights) and the training loss built on it:

* ``head(embeddings, labels)`` -> scalar training loss;
* ``head.scores(embeddings)`` -> (N, C) label-free class scores; prediction is their argmax;
* ``head.weight`` -> the (C K, D) class weights, an ``nn.Parameter`` (trained and checkpointed):
  K = ``sub_centers`` rows per class, class-major (row c K + k is sub-centre k of class c);
* ``head.cosines(embeddings)`` -> (N, C) cosine of each embedding to each class (with K > 1 the
  largest over the class's sub-centres): the one place that reads ``weight`` as classes;
* ``head.class_directions()`` -> (C, K, D) the weight rows grouped by class (the projector draws
  them); every analysis that needs "the class directions" asks this, never ``weight``'s shape;
* ``head.training_logits(embeddings, labels)`` -> the (N, C) margin-modified logits that the
  loss sees (used only by the leakage audit, never for prediction).

Heads are built from ``conf/loss/*.yaml`` with
``hydra.utils.instantiate(cfg, embedding_dim=D, num_classes=C)``.
"""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_int


class LossHead(nn.Module):
    """Base class: class weights plus a training loss. Subclasses implement ``training_logits``
    and ``scores``; heads whose loss is not a plain cross-entropy also override ``forward``."""

    # Share of each target's probability spread evenly over all classes by the cross-entropy in
    # ``forward``; a head that offers it sets it from its config (see Softmax).
    label_smoothing: float = 0.0

    def __init__(self, embedding_dim: int, num_classes: int, sub_centers: int = 1) -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, whole_floats=True)
        self.num_classes = check_int("num_classes", num_classes, 2, whole_floats=True)
        self.sub_centers = check_int("loss.sub_centers", sub_centers, 1, whole_floats=True)
        self.weight = nn.Parameter(torch.empty(self.num_classes * self.sub_centers, self.embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, C) cosines to the classes, float32 (float64 kept) with autocast off; with
        sub-centres, each class's largest (its dominant sub-centre for that embedding)."""
        cos = cosine_matrix(embeddings, self.weight)
        if self.sub_centers == 1:
            return cos
        return cos.view(len(cos), self.num_classes, self.sub_centers).amax(dim=2)

    def class_directions(self) -> torch.Tensor:
        """(C, K, D): the weight rows of each class (K = 1 for every head without sub-centres)."""
        return self.weight.view(self.num_classes, self.sub_centers, self.embedding_dim)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.training_logits(embeddings, labels)
        # float32 at least (float64 stays float64 so the loss can be gradchecked).
        return nn.functional.cross_entropy(at_least_float32(logits), labels, label_smoothing=self.label_smoothing)

    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Label-free prediction: the argmax of ``scores``."""
        return self.scores(embeddings).argmax(dim=1)


class CosineMarginHead(LossHead):
    """Heads whose logits are ``s cos t_j`` with only the true class's cosine transformed
    (NormFace, CosFace, ArcFace, the combined margin): a subclass sets ``s`` and overrides
    ``target_cos``. Scores are the plain cosines, whose argmax is the label-free prediction."""

    s: float

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        """The margin-modified cosine of the true class, before the scale s."""
        return cos_t

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.cosines(embeddings)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings)
        target = self.target_cos(cos.gather(1, labels.view(-1, 1)).squeeze(1))
        return self.s * replace_target(cos, labels, target)


# --------------------------------------------------------------------------------------------
# Small shared helpers (numerics). Parameter checks: src/config/checks.py (owner = the loss's name).
# --------------------------------------------------------------------------------------------

# Floor of the norm in ``unit``: a zero embedding's cosine is 0, and the gradient reaching an
# embedding row is at most |dL/du| / NORM_EPS. 1e-6 let a zero row's gradient reach ~s / 1e-6,
# which overflows float16 (max 65504) under 16-mixed; with 1e-3 it stays finite for s / N <= 32
# (N = batch size). Only rows shorter than 1e-3, dead embeddings in practice, see the floor.
NORM_EPS = 1e-3


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Promote half/bfloat16 to float32 but keep float64 (so gradcheck runs in float64)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def no_autocast(x: torch.Tensor) -> torch.autocast:
    """Context that switches autocast off on ``x``'s device: margin math stays in float32."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation with a finite gradient at the zero vector."""
    return nn.functional.normalize(x, p=2.0, dim=1, eps=NORM_EPS)


def cosine_matrix(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(N, C) cosines between embeddings and class weights, computed in (at least) float32 with
    autocast off and clamped to [-1, 1] (rounding can leave |cos| slightly above 1)."""
    with no_autocast(embeddings):
        x = at_least_float32(embeddings)
        w = weight.to(x.dtype)
        return (unit(x) @ unit(w).t()).clamp(-1.0, 1.0)


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Out-of-place: ``logits`` with each row's true-class entry replaced by ``target`` (N,)."""
    return logits.scatter(1, labels.view(-1, 1), target.view(-1, 1).to(logits.dtype))
