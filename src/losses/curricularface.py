"""CurricularFace (Huang et al. 2020, "CurricularFace: Adaptive Curriculum Learning Loss for Deep
Face Recognition"; authors' code HuangYG123/CurricularFace, head/metrics.py).

    target      T(cos t_y) = ArcFace's cos(t_y + m)            (``convention``, default fallback)
    non-target  N(cos t_j) = cos t_j                           if cos t_j <= T(cos t_y)
                           = cos t_j (t + cos t_j)             otherwise (a hard negative)
    logits      s T for the true class, s N for the others

t is an exponential moving average of the batch-mean true-class cosine,
t <- momentum * mean_i cos t_{y_i} + (1 - momentum) t, starting at 0: early on (t ~ 0) hard
negatives are damped (cos (0 + cos) < cos), later (t -> 1) they are amplified. t is a persistent
buffer (checkpointed), updated only by training-mode forward calls, before the logits are built
(as the authors' code does), from the global batch under DDP (src/losses/running_stats.py).

Where this differs from the authors' code (docs/losses.md):

* the target and its gradient come from ``src.losses.margin`` (finite at cos t_y = +-1); the
  code's sqrt(1 - cos^2) after clamp(-1, 1) has an infinite derivative there, and a NaN one at
  cos t_y = -1, where torch.where's unselected branch multiplies that infinity by 0;
* a negative is hard when its cosine exceeds the target actually used (the paper's T); the code
  compares with the raw cos(t_y + m) also where its fallback replaced the target, which differs
  only for t_y > pi - m;
* the fallback switch is stated on the angle (t_y + m > pi, ArcFace's ``fallback``), the code's on
  the cosine (cos t_y <= cos(pi - m)): the same rule for m <= pi except at the switch point itself;
* t moves only in training mode (the code also moves it on evaluation forward calls).
"""

from __future__ import annotations

import torch

from src.config.checks import check_number
from src.losses.arcface import ArcFace
from src.losses.base import no_autocast, replace_target
from src.losses.running_stats import global_moments


class CurricularFace(ArcFace):
    """ArcFace's target with hard negatives modulated by the running t; scores are the cosines."""

    loss_name = "curricularface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.5,
        s: float = 64.0,
        convention: str = "fallback",
        momentum: float = 0.01,
    ) -> None:
        super().__init__(embedding_dim, num_classes, m=m, s=s, convention=convention)
        self.momentum = check_number("loss.momentum", momentum, low=0.0, high=1.0, owner=self.loss_name)
        self.register_buffer("t", torch.zeros(()))

    @torch.no_grad()
    def update_t(self, cos_target: torch.Tensor) -> None:
        """t <- momentum * (global batch mean of cos t_y) + (1 - momentum) t; an empty batch leaves t."""
        n, mean, _ = global_moments(cos_target)
        new = self.momentum * mean + (1.0 - self.momentum) * self.t.double()
        self.t.copy_(torch.where(n > 0, new, self.t.double()).to(self.t.dtype))

    def _logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with no_autocast(cos):
            target = self.target_cos(cos.gather(1, labels.view(-1, 1)).squeeze(1))
            with torch.no_grad():
                hard = cos > target.view(-1, 1)  # the true class's own entry is replaced below
            t = self.t.to(cos.dtype)
            modulated = torch.where(hard, cos * (t + cos), cos)
            return self.s * replace_target(modulated, labels, target)

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The logits with the current t (no update)."""
        return self._logits(self.cosines(embeddings), labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings)
        if self.training:
            self.update_t(cos.gather(1, labels.view(-1, 1)))
        logits = self._logits(cos, labels)
        return torch.nn.functional.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
