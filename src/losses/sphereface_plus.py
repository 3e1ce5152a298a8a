"""SphereFace+ (Liu et al. 2018, "Learning towards Minimum Hyperspherical Energy"): the A-Softmax
loss plus alpha times the hyperspherical energy of the normalised class weights,

    E = mean_{i != j} |w_i - w_j|^(-p)     (p = mhe_power > 0; Riesz s-energy)
    E = mean_{i != j} -log |w_i - w_j|     (mhe_power = 0; logarithmic energy)

with w = w / |w|. Minimising E spreads the class directions evenly over the sphere, which is the
inter-class half of SphereFace's criterion. Everything else (m, lambda schedule, step buffer,
normalize_features) is SphereFace's."""

from __future__ import annotations

from typing import Any

import torch

from src.config.checks import check_number
from src.losses.base import at_least_float32, no_autocast, unit
from src.losses.sphereface import SphereFace

# Floor under the squared distance of two class directions: the energy of coinciding weights is
# large (1e6 for p = 1) but finite, and its gradient too.
MHE_EPS = 1e-12


class SphereFacePlus(SphereFace):
    loss_name = "sphereface_plus"

    def __init__(
        self, embedding_dim: int, num_classes: int, alpha: float = 1.0, mhe_power: float = 1.0, **sphereface: Any
    ) -> None:
        """``alpha`` and ``mhe_power`` are SphereFace+'s own; the rest are SphereFace's (m, lambda_*, ...)."""
        super().__init__(embedding_dim, num_classes, **sphereface)
        self.alpha = check_number("loss.alpha", alpha, low=0.0, owner=self.loss_name)
        self.mhe_power = check_number("loss.mhe_power", mhe_power, low=0.0, owner=self.loss_name)

    def hyperspherical_energy(self) -> torch.Tensor:
        with no_autocast(self.weight):
            w = unit(at_least_float32(self.weight))
            d2 = (2.0 - 2.0 * (w @ w.t())).clamp_min(MHE_EPS)
            off = ~torch.eye(self.num_classes, dtype=torch.bool, device=w.device)
            d2 = d2[off]
            if self.mhe_power == 0:
                return (-0.5 * torch.log(d2)).mean()
            return d2.pow(-0.5 * self.mhe_power).mean()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().forward(embeddings, labels)
        if self.alpha > 0:
            loss = loss + self.alpha * self.hyperspherical_energy()
        return loss
