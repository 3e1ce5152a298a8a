"""Triplet loss (Schroff, Kalenichenko & Philbin 2015, FaceNet) on in-batch triplets of unit
embeddings:  max(0, |u_a - u_p|^2 - |u_a - u_n|^2 + m),  u = x / |x|  (FaceNet: alpha = 0.2).

mining="all": mean over every valid triplet (a, p, n), zeros included (computed from sorted
negative distances and prefix sums, so memory stays N^2). mining="hard": batch-hard, per anchor
its farthest positive and nearest negative. mining="semihard" (FaceNet): per positive pair
(a, p), the nearest negative that is farther than p; if there is none, the farthest negative.
Prediction: nearest class center of the training embeddings (see ``src.losses.metric_base``)."""

from __future__ import annotations

import torch

from src.losses.metric_base import MetricLossHead, mean_or_zero, pair_masks, squared_distances


class Triplet(MetricLossHead):
    loss_name = "triplet"
    minings = ("all", "hard", "semihard")

    default_m, default_mining = 0.2, "semihard"

    def metric_loss(self, u: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d2 = squared_distances(u)
        pos, neg = pair_masks(labels)
        big = torch.finfo(d2.dtype).max
        if self.mining == "hard":
            anchors = pos.any(dim=1) & neg.any(dim=1)
            far_pos = torch.where(pos, d2, -1.0).max(dim=1).values
            near_neg = torch.where(neg, d2, big).min(dim=1).values
            return mean_or_zero(torch.relu(far_pos - near_neg + self.m)[anchors], u)
        # Per anchor, its negatives' distances sorted ascending (padding at the end), so that
        # "all" and "semihard" need searchsorted on (N, N) instead of (N, N, N) tensors.
        n_neg = neg.sum(dim=1, keepdim=True)  # (N, 1)
        sorted_neg = torch.where(neg, d2, big).sort(dim=1).values
        idx = torch.arange(d2.shape[1], device=d2.device).expand_as(d2)
        sorted_neg = torch.where(idx < n_neg, sorted_neg, 0.0)  # padding 0: safe in a cumsum
        search = torch.where(idx < n_neg, sorted_neg, big).contiguous()
        valid = pos & (n_neg > 0)
        if self.mining == "all":
            # sum_n relu(d_ap + m - d_an) = cnt (d_ap + m) - (sum of the cnt smallest d_an),
            # cnt = #negatives with d_an < d_ap + m; mean over all valid (a, p, n).
            thr = d2 + self.m
            cnt = torch.searchsorted(search, thr.contiguous(), right=False)
            prefix = torch.cat([torch.zeros_like(d2[:, :1]), sorted_neg.cumsum(dim=1)], dim=1)
            sums = cnt.to(d2.dtype) * thr - prefix.gather(1, cnt)
            n_triplets = (valid.to(d2.dtype) * n_neg.to(d2.dtype)).sum()
            if n_triplets == 0:
                return u.sum() * 0.0
            return sums[valid].sum() / n_triplets
        # semihard: the first negative strictly farther than the positive, else the farthest.
        first = torch.searchsorted(search, d2.contiguous(), right=True)
        has = first < n_neg
        at = torch.where(has, first, (n_neg - 1).clamp_min(0).expand_as(first))
        chosen = sorted_neg.gather(1, at)
        return mean_or_zero(torch.relu(d2 - chosen + self.m)[valid], u)
