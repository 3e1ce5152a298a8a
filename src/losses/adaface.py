"""AdaFace (Kim, Jain & Liu 2022, "AdaFace: Quality Adaptive Margin for Face Recognition"; authors'
code mk-minchul/AdaFace, head.py). The feature norm |x| stands in for image quality:

    z      = clip(h (|x| - mu) / (sigma + eps), -1, 1)        (|x| detached, clipped to [1e-3, 100])
    target = cos(t_y - m z) - (m + m z)                       (g_angle = -m z, g_add = m + m z)
    others = cos t_j;   logits = s * (target, others)

High-norm (good quality) samples (z -> 1) get an additive margin 2m and an angular bonus m,
low-norm ones (z -> -1) an angular margin m and no additive one; z = 0 is CosFace with margin m.
mu and sigma are exponential moving averages of the batch mean and (unbiased) standard deviation
of |x|, mu <- t_alpha * mean + (1 - t_alpha) mu, starting at ``init_mean``, ``init_std``; they are
persistent buffers (checkpointed), updated only by training-mode forward calls, before z is
computed (as the authors' code does), from the global batch under DDP
(src/losses/running_stats.py). A batch of one sample updates mu only (its std is undefined: the
authors' torch.std gives NaN, which would then stay in the buffer for good).

The angle a = t_y - m z leaves [0, pi] for t_y < m z (easy, high-norm samples) or
t_y > pi - m |z|. ``convention``:

* ``clip`` (default, the authors' rule): a is clipped to [0, pi] (the code: [1e-3, pi - 1e-3]),
  so the target is flat there, 1 - m - m z below and -1 - m - m z above, with zero gradient;
* ``monotone``: Phi(a) = (-1)^k cos a - 2k, k = floor(a / pi), also for a < 0 (k = -1 gives
  2 - cos a), continuous and strictly decreasing in t_y everywhere.

Values are exact; the gradient in cos t_y is sin(a) / sin(t_y) (|sin a| / sin t_y for monotone),
with sin t_y floored at SIN_FLOOR (src/losses/margin.py), so it stays finite at cos t_y = +-1.
"""

from __future__ import annotations

import math

import torch

from src.config.checks import check_choice, check_number
from src.losses.base import LossHead, at_least_float32, no_autocast, replace_target
from src.losses.margin import SIN_FLOOR
from src.losses.running_stats import global_moments

CONVENTIONS = ("clip", "monotone")
# The authors' constants: the floor under sigma in z, and the range the norms are clipped to.
SIGMA_EPS = 1e-3
NORM_RANGE = (1e-3, 100.0)


def adaface_target(cos_t: torch.Tensor, g: torch.Tensor, convention: str = "clip") -> torch.Tensor:
    """cos(t - g) with t = acos(cos_t), per sample g (no gradient); outside [0, pi] the angle is
    clipped (``clip``) or Phi continues it (``monotone``). No acos on the gradient path."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        with torch.no_grad():
            sin_t = torch.sqrt(((1.0 - c) * (1.0 + c)).clamp_min(0.0))
            a = torch.acos(c) - g.to(c.dtype)
            if convention == "clip":
                inside = (a >= 0.0) & (a <= math.pi)
                value = torch.cos(a.clamp(0.0, math.pi))
                slope = torch.where(inside, torch.sin(a), torch.zeros_like(a)) / sin_t.clamp_min(SIN_FLOOR)
            else:
                k = torch.floor(a / math.pi)
                value = (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(a) - 2.0 * k
                slope = torch.sin(a).abs() / sin_t.clamp_min(SIN_FLOOR)
        # value carries slope as its derivative in c (c - c.detach() is exactly 0).
        return value + slope * (c - c.detach())


class AdaFace(LossHead):
    """Norm-adaptive margin on the target; non-target logits s cos t_j; scores are the cosines."""

    loss_name = "adaface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.4,
        h: float = 0.333,
        s: float = 64.0,
        t_alpha: float = 0.01,
        init_mean: float = 20.0,
        init_std: float = 100.0,
        convention: str = "clip",
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.m = check_number("loss.m", m, low=0.0, owner=name)
        self.h = check_number("loss.h", h, low=0.0, owner=name)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.t_alpha = check_number("loss.t_alpha", t_alpha, low=0.0, high=1.0, owner=name)
        init_mean = check_number("loss.init_mean", init_mean, low=0.0, owner=name)
        init_std = check_number("loss.init_std", init_std, low=0.0, owner=name)
        self.convention = check_choice("loss.convention", convention, CONVENTIONS, owner=name)
        self.register_buffer("batch_mean", torch.tensor(init_mean))
        self.register_buffer("batch_std", torch.tensor(init_std))

    @staticmethod
    def feature_norms(embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) detached |x|, clipped to the authors' [1e-3, 100]."""
        with torch.no_grad(), no_autocast(embeddings):
            return at_least_float32(embeddings).norm(dim=1).clamp(*NORM_RANGE)

    @torch.no_grad()
    def update_statistics(self, norms: torch.Tensor) -> None:
        """EMA of the global batch's mean and unbiased std of the norms (std kept for N < 2)."""
        n, mean, var = global_moments(norms)
        a = self.t_alpha
        for buf, new, ok in ((self.batch_mean, mean, n > 0), (self.batch_std, var.sqrt(), n > 1)):
            old = buf.double()
            buf.copy_(torch.where(ok, a * new + (1.0 - a) * old, old).to(buf.dtype))

    def margin_scaler(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) z = clip(h (|x| - mu) / (sigma + eps), -1, 1), without gradient."""
        norms = self.feature_norms(embeddings)
        mu, sigma = self.batch_mean.to(norms.dtype), self.batch_std.to(norms.dtype)
        return (self.h * (norms - mu) / (sigma + SIGMA_EPS)).clamp(-1.0, 1.0)

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.cosines(embeddings)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The logits with the current mu, sigma (no update)."""
        cos = self.cosines(embeddings)
        z = self.margin_scaler(embeddings).to(cos.dtype)
        with no_autocast(cos):
            target = adaface_target(cos.gather(1, labels.view(-1, 1)).squeeze(1), self.m * z, self.convention)
            return self.s * replace_target(cos, labels, target - (self.m + self.m * z))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update_statistics(self.feature_norms(embeddings))
        return super().forward(embeddings, labels)
