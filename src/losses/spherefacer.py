"""SphereFace-R (Liu et al. 2022, "SphereFace Revived: Unifying Hyperspherical Face Recognition";
authors' code: ydwen/opensphere at 032c31b, ``model/head/spherefacer.py``).

Class weights are normalised, the margin is multiplicative and real-valued (m >= 1), and it is
applied with *characteristic gradient detachment* (CGD): the logits are

    f_j = scale * (cos t_j + sg[eta_j(t_j) - cos t_j])          (sg = stop-gradient)

so the forward value is scale * eta_j(t_j) while the gradient is that of scale * cos t_j: the
margin shapes only which samples get gradient and how much, never its direction through eta.
``margin_type`` picks eta (the code's ``magn_type``):

    v0  target Phi(m t_y),         others cos t_j    (SphereFace's psi, extended to real m)
    v1  target cos(min(m t_y, pi)), others cos t_j    (psi clipped at pi instead of extended)
    v2  target cos t_y,             others cos(t_j / m)  (the margin moves the non-targets)

v0, v1 and v2 share the decision boundary m t_y = t_j. ``feature_norm`` is the paper's choice of
feature magnitude: ``hard`` (HFN, scale = s), ``none`` (no FN, scale = |x|), ``soft`` (SFN,
scale = |x| and the loss adds soft_weight * mean | |x| - s |). ``detach: false`` differentiates
through eta (SphereFace-style; for ablation). Phi and the angle maps are ``combined_margin_cos``
(exact values, slopes floored at |cos| = 1), never acos on the gradient path.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from src.config.checks import check_bool, check_choice, check_number
from src.losses.base import LossHead, at_least_float32, no_autocast, replace_target
from src.losses.margin import combined_margin_cos

MARGIN_TYPES = ("v0", "v1", "v2")
FEATURE_NORMS = ("hard", "none", "soft")


def spherefacer_eta(cos: torch.Tensor, labels: torch.Tensor, m: float, margin_type: str) -> torch.Tensor:
    """(N, C) eta_j(t_j): the margin-modified cosines of every class (targets and non-targets),
    float32 at least, with finite slopes at cos = +-1."""
    with no_autocast(cos):
        c = at_least_float32(cos)
        if margin_type == "v2":  # cos(t / m) on the non-targets; the target keeps cos t_y
            return replace_target(combined_margin_cos(c, 1.0 / m, 0.0), labels, c.gather(1, labels.view(-1, 1)))
        c_y = c.gather(1, labels.view(-1, 1)).squeeze(1)
        target = combined_margin_cos(c_y, m, 0.0)  # Phi(m t_y)
        if margin_type == "v1":  # clip m t_y at pi: flat at -1 beyond, so no slope there
            with torch.no_grad():
                past_pi = m * torch.acos(c_y.clamp(-1.0, 1.0)) >= math.pi
            target = torch.where(past_pi, torch.full_like(target, -1.0), target)
        return replace_target(c, labels, target)


class SphereFaceR(LossHead):
    """SphereFace-R with CGD. Scores are the label-free s cos t_j (hard) or |x| cos t_j (none,
    soft), whose argmax is the cosine argmax."""

    loss_name = "spherefacer"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 1.5,
        s: float = 30.0,
        margin_type: str = "v0",
        feature_norm: str = "hard",
        soft_weight: float = 0.01,
        detach: bool = True,
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.m = check_number("loss.m", m, low=1.0, owner=name)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.margin_type = check_choice("loss.margin_type", margin_type, MARGIN_TYPES, owner=name)
        self.feature_norm = check_choice("loss.feature_norm", feature_norm, FEATURE_NORMS, owner=name)
        self.soft_weight = check_number("loss.soft_weight", soft_weight, low=0.0, owner=name)
        self.detach = check_bool("loss.detach", detach, owner=name)

    def _cos_scale_norm(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cosines (N, C), scale (N, 1), |x| (N, 1)): scale is s (hard) or |x| (none, soft)."""
        cos = self.cosines(embeddings)
        with no_autocast(embeddings):
            norm = torch.linalg.vector_norm(at_least_float32(embeddings), dim=1, keepdim=True).to(cos.dtype)
        scale = torch.full_like(norm, self.s) if self.feature_norm == "hard" else norm
        return cos, scale, norm

    def scores(self, embeddings: torch.Tensor) -> torch.Tensor:
        cos, scale, _ = self._cos_scale_norm(embeddings)
        return scale * cos

    def _logits(self, cos: torch.Tensor, scale: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        eta = spherefacer_eta(cos, labels, self.m, self.margin_type)
        if self.detach:  # CGD: value of eta, gradient of cos
            eta = cos + (eta - cos).detach()
        return scale * eta

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos, scale, _ = self._cos_scale_norm(embeddings)
        return self._logits(cos, scale, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos, scale, norm = self._cos_scale_norm(embeddings)
        loss = nn.functional.cross_entropy(self._logits(cos, scale, labels), labels)
        if self.feature_norm == "soft" and self.soft_weight > 0:
            loss = loss + self.soft_weight * (norm - self.s).abs().mean()
        return loss
