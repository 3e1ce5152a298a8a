"""SphereFace / A-Softmax (Liu et al. 2017), with the original lambda annealing.

Class weights are normalised (|w_j| = 1) and there is no bias. Logits:

    non-target  f_j = |x| cos t_j
    target      f_y = |x| (lambda cos t_y + psi(t_y)) / (1 + lambda)

psi(t) = (-1)^k cos(m t) - 2k = Phi(m t) (``src.losses.margin.sphere_psi``), cos(m t) from the
Chebyshev polynomial of cos t. lambda blends the easy softmax target into the hard one early in
training:

    lambda = max(lambda_min, lambda_base * (1 + lambda_gamma * step) ** (-lambda_power))

``step`` is a persistent int64 buffer (checkpointed, so a resumed run continues the schedule)
counting training-mode forward calls; a forward uses the lambda of the current step, then
increments it. ``anneal=False`` fixes lambda = lambda_min (lambda_min = 0: pure psi).
``normalize_features=True`` replaces |x| by the fixed scale s (the feature-normalised variant).
"""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_bool, check_int, check_number
from src.losses.base import LossHead, at_least_float32, no_autocast, replace_target
from src.losses.margin import sphere_psi


class SphereFace(LossHead):
    """A-Softmax with integer angular margin m >= 1. Scores are the label-free logits
    |x| cos t_j (or s cos t_j with ``normalize_features``), whose argmax is the cosine argmax."""

    loss_name = "sphereface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: int = 4,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
        anneal: bool = True,
        normalize_features: bool = False,
        s: float = 30.0,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.m = check_int("loss.m", m, low=1, whole_floats=True, owner=name)
        self.lambda_base = check_number("loss.lambda_base", lambda_base, low=0.0, owner=name)
        self.lambda_gamma = check_number("loss.lambda_gamma", lambda_gamma, low=0.0, owner=name)
        self.lambda_power = check_number("loss.lambda_power", lambda_power, low=0.0, owner=name)
        self.lambda_min = check_number("loss.lambda_min", lambda_min, low=0.0, owner=name)
        self.anneal = check_bool("loss.anneal", anneal, owner=name)
        self.normalize_features = check_bool("loss.normalize_features", normalize_features, owner=name)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64), persistent=True)

    def lambda_at(self, step: int) -> float:
        """The schedule's lambda after ``step`` training forward calls."""
        if not self.anneal:
            return self.lambda_min
        decayed = self.lambda_base * (1.0 + self.lambda_gamma * float(step)) ** (-self.lambda_power)
        return max(self.lambda_min, decayed)

    def current_lambda(self) -> float:
        return self.lambda_at(int(self.step.item()))

    def _scaled_cosines(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cosines (N, C), scale (N, 1)): scale is |x|, or s with normalize_features."""
        cos = self.cosines(embeddings)
        if self.normalize_features:
            return cos, torch.full_like(cos[:, :1], self.s)
        with no_autocast(embeddings):
            norm = torch.linalg.vector_norm(at_least_float32(embeddings), dim=1, keepdim=True)
        return cos, norm.to(cos.dtype)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        cos, scale = self._scaled_cosines(embeddings)
        return scale * cos

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos, scale = self._scaled_cosines(embeddings)
        lam = self.current_lambda()
        cos_y = cos.gather(1, labels.view(-1, 1)).squeeze(1)
        target_cos = (lam * cos_y + sphere_psi(cos_y, self.m)) / (1.0 + lam)
        return scale * replace_target(cos, labels, target_cos)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self.training_logits(embeddings, labels), labels)
        if self.training:
            with torch.no_grad():
                self.step += 1
        return loss
