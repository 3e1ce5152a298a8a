"""Batch statistics for heads that keep running averages (CurricularFace's t, AdaFace's feature-norm
mean and spread), taken over the *global* batch under DDP: the per-rank count, sum and sum of
squares are all-reduced when torch.distributed is initialised, so every rank computes the same
statistics and its buffers stay identical to the other ranks' (without it each rank would average
its own shard, and DDP's buffer broadcast would silently keep rank 0's)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def _all_reduced(sums: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        sums = sums.clone()
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return sums


@torch.no_grad()
def global_moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, unbiased variance) of ``values`` over every rank: 0-d float64 tensors on
    ``values``' device (no host synchronisation). The mean is NaN for an empty global batch and
    the variance for fewer than two values; callers keep their old statistics then."""
    v = values.detach().reshape(-1).double()
    n = torch.full((), float(v.numel()), dtype=v.dtype, device=v.device)
    n, total, squares = _all_reduced(torch.stack([n, v.sum(), (v * v).sum()])).unbind()
    mean = total / n
    var = (squares - n * mean * mean).clamp_min(0.0) / (n - 1)
    return n, mean, torch.where(n > 1, var, torch.full_like(var, float("nan")))
