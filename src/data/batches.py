"""Batches cut straight from tensors held in memory (on the training device when it is a GPU).

A DataLoader would index, collate and copy one sample at a time; here a batch is one gather.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist

from src.data.augment import random_crop, random_erase, random_hflip


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class InMemoryBatches:
    """An iterable of ``(images float32 N x C x H x W, labels int64 N)`` batches.

    Images are stored as uint8, ``(N, H, W)`` for one channel or ``(N, C, H, W)``, and scaled per
    batch. Training order is a permutation drawn from ``seed`` and the epoch number given by
    ``epoch_fn`` so a resumed run sees the same order.
    Under torch.distributed each rank takes a disjoint share: equal-length shares for training
    (DDP needs the same step count everywhere), an exact split with no padding for evaluation so
    that synchronised metrics count every image once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        epoch_fn: Callable[[], int] | None = None,
        mean: float = 0.0,
        std: float = 1.0,
        hflip: bool = False,
        crop_padding: int = 0,
        erase_prob: float = 0.0,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.epoch_fn = epoch_fn or (lambda: 0)
        self.mean, self.std = float(mean), float(std)
        self.hflip, self.crop_padding, self.erase_prob = hflip, int(crop_padding), float(erase_prob)
        self.drop_last, self.channels_last = drop_last, channels_last

    def _indices(self) -> torch.Tensor:
        n = self.labels.shape[0]
        rank, world = _rank_and_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch_fn())
            order = torch.randperm(n, generator=g)
            share = n // world
            return order[rank::world][:share]
        bounds = [n * r // world for r in range(world + 1)]
        return torch.arange(bounds[rank], bounds[rank + 1])

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices().to(self.images.device)
        augment = self.shuffle and (self.hflip or self.crop_padding > 0 or self.erase_prob > 0)
        gen = None
        if augment:
            gen = torch.Generator(device=self.images.device)
            gen.manual_seed(self.seed * 100_003 + self.epoch_fn() + 7)
        for start in range(0, len(indices), self.batch_size):
            idx = indices[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            x = self.images[idx]
            x = (x.unsqueeze(1) if x.ndim == 3 else x).float().div_(255.0)
            if augment:  # before normalising, so crops pad with black like the images' background
                if self.hflip:
                    x = random_hflip(x, gen)
                x = random_crop(x, self.crop_padding, gen)
            x = x.sub_(self.mean).div_(self.std)
            if augment:  # after normalising: an erased patch holds the mean image value (0)
                x = random_erase(x, self.erase_prob, gen)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
