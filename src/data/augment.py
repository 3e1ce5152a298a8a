"""Batched image augmentation on the batch's own device.

Written by hand because torchvision is not installable beside the CPU torch build this project
targets, and because three vectorised ops on a whole batch are all the recipes need.
"""

from __future__ import annotations

import math

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


def random_erase(
    images: torch.Tensor, prob: float, generator: torch.Generator | None = None, value: float = 0.0,
    area: tuple[float, float] = (0.02, 0.4), log_ratio: tuple[float, float] = (math.log(0.3), math.log(3.3)),
) -> torch.Tensor:
    """Random erasing (Zhong et al., 2017): with probability ``prob`` per image, fill one rectangle
    with ``value``. Its area is a uniform fraction in ``area`` of the image and its aspect ratio
    h/w is log-uniform in exp(``log_ratio``) (0.3 to 3.3); a side longer than the image is clipped
    to it, where torchvision would draw again. One draw per image, all images at once."""
    if prob <= 0:
        return images
    n, _, h, w = images.shape
    dev = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, device=dev, generator=generator)

    erase = torch.rand(n, device=dev, generator=generator) < prob
    target = uniform(*area) * (h * w)
    ratio = uniform(*log_ratio).exp()
    eh = (target * ratio).sqrt().round().clamp(1, h).long()
    ew = (target / ratio).sqrt().round().clamp(1, w).long()
    top = (uniform(0.0, 1.0) * (h - eh + 1)).floor().long()
    left = (uniform(0.0, 1.0) * (w - ew + 1)).floor().long()
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # (n, h)
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # (n, w)
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None])[:, None]  # (n, 1, h, w)
    return images.masked_fill(mask, value)
