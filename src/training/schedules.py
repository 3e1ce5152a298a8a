"""Learning-rate schedules with one signature, ``(optimizer, total_steps, **options)``, so every
``conf/scheduler/*.yaml`` is a partial the model completes with the run's real step count."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    return LambdaLR(optimizer, lambda step: 1.0)


def one_cycle(
    optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
    final_div_factor: float = 1e4, anneal_strategy: str = "cos",
) -> LRScheduler:
    """Warm up to the optimiser's lr, then anneal (Smith & Topin's one-cycle policy)."""
    max_lr = [group["lr"] for group in optimizer.param_groups]
    # OneCycleLR divides by (pct_start * total_steps - 1), which is zero for some tiny runs
    # (4 steps at 0.25); a few spare steps at the end only matter to smoke tests.
    total_steps = max(total_steps, math.ceil(2 / pct_start) + 1)
    return OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
        div_factor=div_factor, final_div_factor=final_div_factor, anneal_strategy=anneal_strategy,
        cycle_momentum=False,
    )


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05, min_factor: float = 0.0
) -> LRScheduler:
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
