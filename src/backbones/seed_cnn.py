"""The reference study's CNN, layer for layer (Keras original, ported to PyTorch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from src.config.checks import check_int, fail, is_int


class SeedCNN(nn.Module):
    """Conv32-Conv32-Pool-Drop(.25)-Conv64-Conv64-Pool-Drop(.25)-Dense128(ReLU)-BN-Drop(.5).

    The output of the last dropout is the embedding; the study's final Dense10 is the loss head.
    With the softmax head the whole network has 468,074 parameters, as in the reference.

    ``keras_init`` (off by default; on in the reference-protocol audit): Keras' defaults instead of
    PyTorch's: glorot-uniform kernels with zero biases, BatchNormalization momentum 0.99 (PyTorch
    momentum 0.01) and epsilon 1e-3. Same parameters and checkpoint keys either way.
    """

    def __init__(self, embedding_dim: int = 128, in_channels: int = 1, image_size: int | Sequence[int] = 28,
                 keras_init: bool = False) -> None:
        super().__init__()
        self.embedding_dim = check_int("backbone.embedding_dim", embedding_dim, 1)
        check_int("backbone.in_channels", in_channels, 1)
        height, width = _height_width(image_size)

        def conv(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            conv(in_channels, 32), conv(32, 32), nn.MaxPool2d(2), nn.Dropout(0.25),
            conv(32, 64), conv(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Flatten(),
        )
        flat = 64 * (height // 4) * (width // 4)  # two 2x2 poolings before the dense layer
        self.embed = nn.Sequential(
            nn.Linear(flat, embedding_dim), nn.ReLU(inplace=True), nn.BatchNorm1d(embedding_dim), nn.Dropout(0.5)
        )
        if keras_init:
            self._keras_defaults()

    def _keras_defaults(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.momentum, module.eps = 0.01, 1e-3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(images))


def _height_width(image_size: int | Sequence[int]) -> tuple[int, int]:
    """An int (square) or [height, width], each >= 4 (two 2x2 poolings must leave a pixel)."""
    size = list(image_size) if isinstance(image_size, Sequence) and not isinstance(image_size, str) else [image_size]
    if len(size) not in (1, 2) or not all(is_int(v) and v >= 4 for v in size):
        fail("backbone.image_size", image_size, "must be an integer >= 4 or [height, width] (each >= 4); leave it "
             "interpolated from the data (${data_shape:image_size})")
    return (size[0], size[-1])
