"""A small CNN with a very low-dimensional embedding (2-D or 3-D) whose features can be plotted
on the plane / circle / sphere, as in the SphereFace demos."""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_int


class SmallCNN(nn.Module):
    def __init__(self, embedding_dim: int = 2, width: int = 32, in_channels: int = 1) -> None:
        super().__init__()
        self.embedding_dim = check_int("backbone.embedding_dim", embedding_dim, 1)
        check_int("backbone.in_channels", in_channels, 1)
        check_int("backbone.width", width, 1)

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(
            stage(in_channels, width), stage(width, 2 * width), stage(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        # No ReLU on the embedding: the features must be free to point in every direction.
        self.embed = nn.Linear(4 * width, embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(images))
