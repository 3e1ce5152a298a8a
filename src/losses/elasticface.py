"""ElasticFace (Boutros, Damer, Kirchbuchner & Kuijper 2022, "ElasticFace: Elastic Margin Loss for
Deep Face Recognition", CVPR workshops; authors' code fdbtrs/ElasticFace, ``utils/losses.py``
classes ``ElasticArcFace`` and ``ElasticCosFace``, values in ``config/config.py``).

ArcFace's or CosFace's fixed margin is replaced, in training, by one margin per sample drawn afresh
at every training-mode forward call from a normal distribution:

    m_i ~ N(m, sigma^2)
    form arc:  target = Phi(t_y + m_i)      (ArcFace's monotone convention, src/losses/margin.py)
    form cos:  target = cos t_y - m_i       (CosFace)
    logits   = s * (target for the true class, cos t_j for the others)

``sorted: true`` is ElasticFace+: the batch's N draws are sorted and handed out by the rank of the
true-class cosine, the smallest margin to the sample nearest its class centre (largest cos t_y)
and the largest margin to the farthest one.

Evaluation mode (the validation loss, the leakage audit) and sigma = 0 use the mean margin m and
draw nothing: then the head is ArcFace (monotone) or CosFace at the same s and m, bit for bit. The
draws come from torch's global generator on the cosines' device (``torch.manual_seed`` and
Lightning's ``seed_everything`` fix them), or from ``head.generator`` when one is set (tests,
a private stream). Scores are the plain cosines, so prediction never sees a margin or a label.
"""

from __future__ import annotations

import math

import torch

from src.config.checks import check_bool, check_choice, check_number
from src.losses.base import CosineMarginHead, at_least_float32, no_autocast
from src.losses.margin import SIN_FLOOR, arc_margin_cos

FORMS = ("arc", "cos")
# The authors' values (config/config.py) for a key left null: m by form, sigma by form and variant.
DEFAULT_M = {"arc": 0.5, "cos": 0.35}
DEFAULT_SIGMA = {("arc", False): 0.05, ("cos", False): 0.05, ("arc", True): 0.0175, ("cos", True): 0.02}


def arc_cos_per_sample(cos_t: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Phi(t + margin_i) for c = cos t and a per-sample margin (N,) of any sign, with gradients in
    both. Phi(a) = (-1)^k cos a - 2k with k = floor(a / pi) for every integer k (k = -1 gives
    2 - cos a for a slightly negative angle), so the target falls strictly as t or margin grows.

    Values are exact (cos(t + m) = cos t cos m - sin t sin m); the slopes are d/dc =
    |sin(t + m)| / max(sin t, SIN_FLOOR) (finite at cos t = +-1, as ArcFace's) and d/dm =
    -|sin(t + m)|. MagFace needs the second: its margin is a function of the feature norm."""
    with no_autocast(cos_t):
        c = at_least_float32(cos_t).clamp(-1.0, 1.0)
        m = margin.to(c.dtype)
        with torch.no_grad():
            sin_t = torch.sqrt(((1.0 - c) * (1.0 + c)).clamp_min(0.0))
            cos_m, sin_m = torch.cos(m), torch.sin(m)
            cos_plus = c * cos_m - sin_t * sin_m
            sin_plus = (sin_t * cos_m + c * sin_m).abs()
            k = torch.floor((torch.acos(c) + m) / math.pi)
            value = (1.0 - 2.0 * torch.remainder(k, 2.0)) * cos_plus - 2.0 * k
        # value carries the two slopes (c - c.detach() and m - m.detach() are exactly 0).
        return value + sin_plus / sin_t.clamp_min(SIN_FLOOR) * (c - c.detach()) - sin_plus * (m - m.detach())


class ElasticFace(CosineMarginHead):
    """Per-sample margins from N(m, sigma^2) in training (arc or cos form, optionally rank-sorted);
    the mean margin m at evaluation. Scores are the cosines."""

    loss_name = "elasticface"

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        form: str = "arc",
        m: float | None = None,
        sigma: float | None = None,
        s: float = 64.0,
        sorted: bool = False,  # the yaml key's name (shadows the builtin, unused here)
    ) -> None:
        super().__init__(embedding_dim, num_classes)
        name = self.loss_name
        self.form = check_choice("loss.form", form, FORMS, owner=name)
        self.sorted = check_bool("loss.sorted", sorted, owner=name)
        m = check_number("loss.m", m, low=0.0, null=True, owner=name)
        sigma = check_number("loss.sigma", sigma, low=0.0, null=True, owner=name)
        self.m = DEFAULT_M[self.form] if m is None else m
        self.sigma = DEFAULT_SIGMA[(self.form, self.sorted)] if sigma is None else sigma
        self.s = check_number("loss.s", s, low=0.0, low_open=True, owner=name)
        # Not a yaml key: set a torch.Generator here for a private, separately seeded stream.
        self.generator: torch.Generator | None = None

    def margins(self, cos_t: torch.Tensor) -> torch.Tensor | None:
        """(N,) this batch's margins for the true-class cosines ``cos_t``, or None where the mean
        margin m applies (evaluation mode, sigma = 0). No gradient."""
        if not self.training or self.sigma == 0.0:
            return None
        with torch.no_grad():
            c = at_least_float32(cos_t.detach())
            device = c.device if self.generator is None else self.generator.device
            z = torch.randn(c.shape, generator=self.generator, dtype=c.dtype, device=device).to(c.device)
            draws = self.m + self.sigma * z
            if not self.sorted:
                return draws
            # Rank r of cos t_y (0 = largest) receives the r-th smallest draw; stable for ties.
            order = torch.argsort(c, descending=True, stable=True)
            assigned = torch.empty_like(draws)
            assigned[order] = torch.sort(draws).values
            return assigned

    def target_cos(self, cos_t: torch.Tensor) -> torch.Tensor:
        margins = self.margins(cos_t)
        if margins is None:  # the parents' own code paths, so sigma = 0 is ArcFace / CosFace exactly
            return arc_margin_cos(cos_t, self.m) if self.form == "arc" else cos_t - self.m
        if self.form == "arc":
            return arc_cos_per_sample(cos_t, margins)
        with no_autocast(cos_t):
            return at_least_float32(cos_t) - margins
