"""ArcFace / additive angular margin (Deng et al. 2019): target logit s cos(t_y + m).

For t_y + m > pi, cos(t_y + m) rises again with the angle, so a convention is needed:

* ``convention="monotone"`` (default): s Phi(t_y + m), the monotone extension of
  ``src.losses.margin`` (continuous, strictly decreasing in t_y for every m >= 0);
* ``convention="fallback"``: s cos(t_y + m) while t_y + m <= pi, else s (cos t_y - m sin m),
  the usual "easy_margin=False" branch of public ArcFace code (their th = cos(pi - m),
  mm = sin(pi - m) m). Note: for m > pi the condition t_y + m <= pi never holds, so the target is
  always cos t_y - m sin m, which for pi < m < 2 pi is a *bonus* (sin m < 0), not a margin.
"""

from __future__ import annotations

import math

import torch

from src.config.checks import check_choice, check_number
from src.losses.base import CosineMarginHead, no_autocast
from src.losses.margin import arc_cos_plus, arc_margin_cos

CONVENTIONS = ("monotone", "fallback")


class ArcFace(CosineMarginHead):
    """Non-target logits s cos t_j; target logit s Phi(t_y + m) (or the fallback rule).
    Scores are the plain cosines."""

    loss_name = "arcface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        m: float = 0.5,
        s: float = 30.0,
        convention: str = "monotone",
        *,
        sub_centers: int = 1,
    ) -> None:
        # sub_centers: set by SubCenterArcFace; not a key of arcface.yaml.
        super().__init__(embedding_dim, num_classes, sub_centers=sub_centers)
        name = self.loss_name
        # No upper bound: m = 2, 4 and 6 rad are part of the study and Phi is defined for all m.
        self.m = check_number("loss.m", m, low=0.0, owner=name)
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        self.convention = check_choice("loss.convention", convention, CONVENTIONS, owner=name)

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        """The margin-modified target cosine (before the scale s) for true-class cosines."""
        if self.convention == "monotone":
            return arc_margin_cos(cos_t, self.m)
        with no_autocast(cos_t):
            # t + m <= pi  <=>  t <= pi - m  <=>  cos t >= cos(pi - m) when 0 <= m <= pi; for
            # m > pi it never holds. Stated on the angle so that both cases read the same.
            with torch.no_grad():
                inside = torch.acos(cos_t.clamp(-1.0, 1.0)) + self.m <= math.pi
            return torch.where(inside, arc_cos_plus(cos_t, self.m), cos_t - self.m * math.sin(self.m))
