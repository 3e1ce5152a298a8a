"""SphereFace2 (Wen et al. 2022, "SphereFace2: Binary Classification is All You Need for Deep Face
Recognition"; authors' code: ydwen/opensphere, ``opensphere/module/head/sphereface2.py``, and at
032c31b ``model/head/sphereface2.py`` with ``magn_type='C'``).

No softmax: C independent one-vs-all binary problems on normalised features and weights. With
the similarity adjustment g(z) = 2 ((z + 1) / 2)^t - 1 (monotone, g(-1) = -1, g(1) = 1) and one
learned bias b shared by all classes, the binary logits are

    z_y = r (g(cos t_y) - m) + b       (positive: the true class)
    z_j = r (g(cos t_j) + m) + b       (negatives, j != y)

and the loss per sample is  alpha log(1 + e^{-z_y}) + (1 - alpha) sum_{j != y} log(1 + e^{z_j}),
averaged over the batch (alpha is the paper's lambda; ``lambda`` is a Python keyword). As in the
code, g and m enter with *gradient detachment* by default: z = r (cos + sg[g(cos) -/+ m - cos]) + b
has g's value but the gradient of r cos (``detach: false`` differentiates through g).

b starts at the minimiser of the loss at cos = 0 (random features), the closed form of the code,
rewritten so that it stays finite where the code's form takes log(0) (``initial_bias``).
Label-free scores are g(cos t_j): b is shared and m is training-only, and g is increasing, so
their argmax is the cosine argmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.config.checks import check_bool, check_number
from src.losses.base import LossHead, at_least_float32, no_autocast


def similarity_g(cos: torch.Tensor, t: float) -> torch.Tensor:
    """g(z) = 2 ((z + 1) / 2)^t - 1 on z = cos clamped to [-1, 1]; float32 at least, autocast off.
    For t >= 1 its slope t ((z + 1) / 2)^(t - 1) is finite on all of [-1, 1]."""
    with no_autocast(cos):
        z = at_least_float32(cos).clamp(-1.0, 1.0)
        return 2.0 * ((z + 1.0) / 2.0).pow(t) - 1.0


def initial_bias(num_classes: int, alpha: float, r: float, m: float, t: float) -> float:
    """The b that minimises alpha log(1 + e^{-(a_y + b)}) + (1 - alpha)(C - 1) log(1 + e^{a_i + b})
    with a_y = r (g(0) - m), a_i = r (g(0) + m): the loss of a sample whose cosines are all 0.

    Setting the derivative to 0 gives, for v = e^{a_i + b} and z = alpha / ((1 - alpha)(C - 1)),
    E v^2 + (1 - z) v - z = 0 with E = e^{a_y - a_i} = e^{-2 r m}. The code takes
    v = 2z / ((1 - z) + sqrt((1 - z)^2 + 4 z E)); when z > 1 (e.g. C = 2, alpha > 1/2) and E
    underflows next to (1 - z)^2 the denominator cancels to 0 and log(0) fails. The other form of
    the same root, v = ((z - 1) + sqrt(...)) / (2E), has no cancellation there; logs avoid the
    overflow of 1 / E."""
    g0 = 2.0 * 0.5**t - 1.0
    a_y, a_i = r * (g0 - m), r * (g0 + m)
    z = alpha / ((1.0 - alpha) * (num_classes - 1.0))
    half_log_e = 0.5 * (a_y - a_i)  # log sqrt(E), kept in logs: E itself underflows for r m > ~370
    root = math.hypot(1.0 - z, 2.0 * math.sqrt(z) * math.exp(half_log_e))  # sqrt((1 - z)^2 + 4 z E)
    if z < 1.0:
        log_v = math.log(2.0 * z) - math.log((1.0 - z) + root)
    elif z == 1.0:  # E v^2 = 1
        log_v = -half_log_e
    else:
        log_v = math.log((z - 1.0) + root) - math.log(2.0) - 2.0 * half_log_e
    return log_v - a_i


class SphereFace2(LossHead):
    """SphereFace2-C. ``bias`` is a learned scalar (an ``nn.Parameter``, checkpointed)."""

    loss_name = "sphereface2"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        alpha: float = 0.7,
        r: float = 40.0,
        m: float = 0.4,
        t: float = 3.0,
        detach: bool = True,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.alpha = check_number("loss.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True, owner=name)
        self.r = check_number("loss.r", r, low=0.0, low_open=True, owner=name)
        self.m = check_number("loss.m", m, low=0.0, owner=name)
        # t < 1 would give g an infinite slope at cos = -1.
        self.t = check_number("loss.t", t, low=1.0, owner=name)
        self.detach = check_bool("loss.detach", detach, owner=name)
        b0 = initial_bias(self.num_classes, self.alpha, self.r, self.m, self.t)
        self.bias = nn.Parameter(torch.full((1,), b0))

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return similarity_g(self.cosines(embeddings), self.t)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) binary logits r (g(cos t_j) -/+ m) + b (minus m for the true class)."""
        cos = self.cosines(embeddings)
        with no_autocast(cos):
            positive = nn.functional.one_hot(labels, self.num_classes).to(cos.dtype)
            adjusted = similarity_g(cos, self.t) - self.m * (2.0 * positive - 1.0)
            if self.detach:  # the code's gradient detachment: g's value, cos's gradient
                adjusted = cos + (adjusted - cos).detach()
            return self.r * adjusted + self.bias.to(cos.dtype)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.training_logits(embeddings, labels)
        with no_autocast(logits):
            positive = nn.functional.one_hot(labels, self.num_classes).to(logits.dtype)
            weight = self.alpha * positive + (1.0 - self.alpha) * (1.0 - positive)
            per_pair = nn.functional.binary_cross_entropy_with_logits(logits, positive, weight=weight, reduction="none")
            return per_pair.sum(dim=1).mean()
