from __future__ import annotations

import torch

from src.backbones.resnet import ResNet
from src.backbones.seed_cnn import SeedCNN
from src.backbones.small import SmallCNN
from src.losses.softmax import Softmax


def test_seed_cnn_matches_reference_parameter_count() -> None:
    # Keras summary of the reference model: 468,074 parameters including the Dense(10) layer.
    net, head = SeedCNN(), Softmax(128, 10)
    assert sum(p.numel() for p in [*net.parameters(), *head.parameters()]) == 468_074


def test_seed_cnn_layers_follow_the_reference() -> None:
    convs = [m for m in SeedCNN().modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    drops = [m.p for m in SeedCNN().modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.25, 0.25, 0.5]


def test_backbones_shapes_and_gradients() -> None:
    for net in (SeedCNN(64), ResNet(32, width=8, blocks_per_stage=1), SmallCNN(2, width=8), SmallCNN(3, width=8)):
        x = torch.randn(4, 1, 28, 28)
        out = net(x)
        assert out.shape == (4, net.embedding_dim)
        out.square().sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_channels_last_gives_same_output() -> None:
    torch.manual_seed(0)
    net = SeedCNN().eval()
    x = torch.randn(3, 1, 28, 28)
    ref = net(x)
    out = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_seed_cnn_keras_init_keeps_parameters_and_keys() -> None:
    torch.manual_seed(0)
    plain, keras = SeedCNN(), SeedCNN(keras_init=True)
    assert list(plain.state_dict()) == list(keras.state_dict())
    assert sum(p.numel() for p in keras.parameters()) == sum(p.numel() for p in plain.parameters())
    bn = next(m for m in keras.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert (bn.momentum, bn.eps) == (0.01, 1e-3)
    for m in keras.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
            assert m.weight.abs().max() <= (6.0 / (fan_in + fan_out)) ** 0.5  # glorot-uniform bound
    default_bn = next(m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert (default_bn.momentum, default_bn.eps) == (0.1, 1e-5)
