"""MagFace (Meng, Zhao, Huang & Zhou 2021, "MagFace: A Universal Representation for Face Recognition
and Quality Assessment", CVPR; authors' code IrvingMeng/MagFace, ``models/magface.py`` classes
``MagLinear`` and ``MagLoss``, values in ``run/run.sh`` and ``run/trainer.py``).

The feature magnitude a = |x| sets an additive angular margin, and a regulariser rewards large
magnitudes, so that at the optimum a sample's magnitude grows with how easily it is recognised:

    a      = clamp(|x|, l_a, u_a)                        (with gradient inside [l_a, u_a])
    m(a)   = l_m + (u_m - l_m) (a - l_a) / (u_a - l_a)   (linear, from l_m to u_m)
    g(a)   = 1 / a + a / u_a^2
    target = s Phi(t_y + m(a))   (convention monotone)   others s cos t_j
    loss   = mean_i CE_i + lambda_g mean_i g(a_i)

The margin's dependence on a is differentiated (as in paper and code): the cross-entropy pulls a
down (a larger a costs a larger margin), g pushes it up (g'(a) = 1/u_a^2 - 1/a^2 < 0 for a < u_a).
For every sample the minimum over a lies inside [l_a, u_a] when lambda_g exceeds
``min_lambda_g`` = s k l_a^2 u_a^2 / (u_a^2 - l_a^2), k = (u_m - l_m) / (u_a - l_a): there the
cross-entropy's slope in a, at most s k, is beaten by g's slope at l_a.

``convention``: ``monotone`` (default, the paper's formula with Phi beyond t_y + m > pi) or
``easy`` (the authors' ``MagLinear``, ``easy_margin=True``: no margin where cos t_y <= 0).
Outside [l_a, u_a] the clamp is flat, so no gradient reaches |x| from either term: for an
embedding shorter than l_a the head is ArcFace with m = l_m (plus a constant). Scores are the
plain cosines; |x| is the paper's quality score, not used for prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_choice, check_number
from src.losses.base import LossHead, at_least_float32, no_autocast, replace_target
from src.losses.elasticface import arc_cos_per_sample

CONVENTIONS = ("monotone", "easy")


class MagFace(LossHead):
    """Magnitude-dependent angular margin plus the magnitude regulariser; scores are the cosines."""

    loss_name = "magface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_m: float = 0.45,
        u_m: float = 0.8,
        lambda_g: float = 35.0,
        convention: str = "monotone",
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        # l_a > 0: g has 1/a. u_a > l_a: the margin's slope divides by u_a - l_a.
        self.l_a = check_number("loss.l_a", l_a, low=0.0, low_open=True, owner=name)
        self.u_a = check_number("loss.u_a", u_a, low=self.l_a, low_open=True, owner=name)
        self.l_m = check_number("loss.l_m", l_m, low=0.0, owner=name)
        # u_m = l_m is allowed: a constant margin (ArcFace plus the regulariser).
        self.u_m = check_number("loss.u_m", u_m, low=self.l_m, owner=name)
        self.lambda_g = check_number("loss.lambda_g", lambda_g, low=0.0, owner=name)
        self.convention = check_choice("loss.convention", convention, CONVENTIONS, owner=name)

    @property
    def min_lambda_g(self) -> float:
        """The smallest lambda_g for which every sample's loss falls as a leaves l_a upwards (the
        bound the authors' trainer prints: s k l_a^2 u_a^2 / (u_a^2 - l_a^2))."""
        k = (self.u_m - self.l_m) / (self.u_a - self.l_a)
        return self.s * k * self.l_a**2 * self.u_a**2 / (self.u_a**2 - self.l_a**2)

    def magnitudes(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) a = clamp(|x|, l_a, u_a), float32 (float64 kept) with autocast off, with gradient."""
        with no_autocast(embeddings):
            return at_least_float32(embeddings).norm(dim=1).clamp(self.l_a, self.u_a)

    def margin(self, a: torch.Tensor) -> torch.Tensor:
        """m(a), linear from l_m at a = l_a to u_m at a = u_a."""
        return self.l_m + (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a)

    def regulariser(self, a: torch.Tensor) -> torch.Tensor:
        """g(a) = 1/a + a/u_a^2: strictly convex, decreasing on (0, u_a), smallest (2/u_a) at u_a."""
        return 1.0 / a + a / self.u_a**2

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.cosines(embeddings)

    def _logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self.cosines(embeddings)
        a = self.magnitudes(embeddings).to(cos.dtype)
        with no_autocast(cos):
            cos_t = cos.gather(1, labels.view(-1, 1)).squeeze(1)
            target = arc_cos_per_sample(cos_t, self.margin(a))
            if self.convention == "easy":
                target = torch.where(cos_t > 0, target, cos_t)
            return self.s * replace_target(cos, labels, target), a

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._logits(embeddings, labels)[0]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, a = self._logits(embeddings, labels)
        ce = nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return ce + self.lambda_g * self.regulariser(a).mean()
