"""A pre-activation residual network sized for 28x28 images (the 'stronger' backbone); global average
pooling makes it take any image size."""

from __future__ import annotations

import torch
from torch import nn

from src.config.checks import check_int, check_number


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class ResNet(nn.Module):
    """Stem conv, three stages of pre-activation blocks (widths w, 2w, 4w; strides 1, 2, 2), global
    average pooling, then a linear + BN projection to the embedding."""

    def __init__(
        self, embedding_dim: int = 128, width: int = 32, blocks_per_stage: int = 2, in_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding_dim = check_int("backbone.embedding_dim", embedding_dim, 1)
        check_int("backbone.in_channels", in_channels, 1)
        check_int("backbone.width", width, 1)
        check_int("backbone.blocks_per_stage", blocks_per_stage, 1)
        check_number("backbone.dropout", dropout, 0.0, 1.0, high_open=True)
        widths = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)]
        cin = width
        for stage, cout in enumerate(widths):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBlock(cin, cout, stride))
                cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, embedding_dim), nn.BatchNorm1d(embedding_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(images))
