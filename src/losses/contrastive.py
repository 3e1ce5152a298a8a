"""Contrastive loss (Hadsell, Chopra & LeCun 2006) on in-batch pairs of unit embeddings:

    same class        d^2 / 2
    different class   max(0, m - d)^2 / 2,        d = |u_i - u_j|, u = x / |x|.

mining="all": mean over all pairs i < j. mining="hard": for each anchor its farthest positive
and its nearest negative (when it has one), mean over those terms. Prediction: nearest class
center of the training embeddings (see ``src.losses.metric_base``)."""

from __future__ import annotations

import torch

from src.losses.metric_base import DIST_EPS, MetricLossHead, mean_or_zero, pair_masks, squared_distances


class Contrastive(MetricLossHead):
    loss_name = "contrastive"
    minings = ("all", "hard")

    default_m, default_mining = 1.0, "all"

    def metric_loss(self, u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d2 = squared_distances(u)
        d = torch.sqrt(d2.clamp_min(DIST_EPS))
        pos, neg = pair_masks(labels)
        pull = 0.5 * d2
        push = 0.5 * torch.relu(self.m - d).pow(2)
        if self.mining == "all":
            upper = torch.triu(torch.ones_like(pos), diagonal=1)
            return mean_or_zero(torch.cat([pull[pos & upper], push[neg & upper]]), u)
        inf = torch.finfo(d2.dtype).max
        hardest_pos = torch.where(pos, d2, -1.0).max(dim=1)  # farthest positive per anchor
        nearest_neg = torch.where(neg, d, inf).min(dim=1)  # nearest negative per anchor
        terms = torch.cat(
            [
                0.5 * hardest_pos.values[pos.any(dim=1)],
                0.5 * torch.relu(self.m - nearest_neg.values[neg.any(dim=1)]).pow(2),
            ]
        )
        return mean_or_zero(terms, u)
