"""Batched image augmentation on the batch's own device.

Written by hand because torchvision is not installable beside the CPU torch build this project
targets, and because two vectorised ops on a whole batch are all the study needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side and cut a random window of the original size per image."""
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]  # (n, 1, w)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Advanced indexing around the channel slice gives (n, h, w, c); move channels back.
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()
