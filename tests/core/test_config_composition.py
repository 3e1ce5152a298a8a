"""Every option of every config group composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from src.training.pipeline import build
from tests.conftest import CONF_DIR
from tests.synthetic import write_as


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_groups_mirror_the_code() -> None:
    assert {"softmax", "sphereface", "arcface", "cosface"} <= set(options("loss"))
    assert {"seed_cnn", "resnet", "small2d", "small3d"} <= set(options("backbone"))
    assert {"fashion_mnist", "mnist"} <= set(options("data"))


@pytest.mark.parametrize("loss", options("loss"))
def test_every_loss_option(tiny_config, loss: str) -> None:
    cfg = tiny_config(f"loss={loss}")
    head = instantiate(cfg.loss, embedding_dim=cfg.model.embedding_dim, num_classes=10)
    assert head.weight.shape == (10 * head.sub_centers, 128)
    emb = torch.randn(4, 128)
    labels = torch.tensor([0, 1, 2, 3])
    assert head(emb, labels).ndim == 0 and head.scores(emb).shape == (4, 10)


@pytest.mark.parametrize("backbone", options("backbone"))
def test_every_backbone_option(tiny_config, backbone: str) -> None:
    cfg = tiny_config(f"backbone={backbone}")
    net = instantiate(cfg.backbone).eval()
    out = net(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, cfg.backbone.embedding_dim) == (2, net.embedding_dim)


@pytest.mark.parametrize("group", ["optimizer", "scheduler"])
def test_every_optimizer_and_scheduler(tiny_config, group: str) -> None:
    for option in options(group):
        cfg = tiny_config(f"{group}={option}")
        params = [torch.nn.Parameter(torch.zeros(3))]
        optimizer = instantiate(cfg.optimizer)(params=params)
        if group == "scheduler":
            scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=10)
            for _ in range(10):
                optimizer.step()
                scheduler.step()


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_option_composes(tiny_config, trainer: str) -> None:
    cfg = tiny_config(f"trainer={trainer}")
    assert cfg.trainer._target_.endswith("Trainer")


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option(tiny_config, data: str, synthetic_root: Path, tmp_path: Path) -> None:
    own = [] if data not in ("folder", "arrays") else [f"data.root={write_as(synthetic_root, data, tmp_path)}"]
    own += [f"data.cache_dir={tmp_path / 'cache'}"] if data == "folder" else []
    cfg = tiny_config(f"data={data}", *own)  # folder, arrays: the synthetic set written out in their format
    datamodule, model = build(cfg)
    assert datamodule.num_classes == model.head.num_classes == 10
    assert len(datamodule.class_names) == 10


def test_mnist_is_fashion_mnist_but_its_name() -> None:
    """conf/data/mnist.yaml inherits fashion_mnist.yaml: the same keys, in the same order, with the
    same values (interpolations unresolved), except data.name."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    mnist, fashion = (OmegaConf.to_container(compose_config([f"data={n}"]).data) for n in ("mnist", "fashion_mnist"))
    assert mnist.pop("name") == "mnist" and fashion.pop("name") == "fashion_mnist"
    assert list(mnist.items()) == list(fashion.items())


def test_experiment_configs_compose(tiny_config) -> None:
    for option in options("experiment"):
        cfg = tiny_config(f"experiment={option}")
        assert "loss" in cfg and "backbone" in cfg


def test_margin_key_is_loss_m(tiny_config) -> None:
    assert tiny_config("loss=arcface", "loss.m=0.5").loss.m == 0.5
    assert tiny_config("loss=sphereface", "loss.m=6").loss.m == 6
    assert tiny_config("loss=cosface", "loss.s=20").loss.s == 20


def test_one_cycle_survives_tiny_runs() -> None:
    from src.training.schedules import one_cycle

    for total in range(1, 12):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = one_cycle(optimizer, total_steps=total)
        for _ in range(total):
            optimizer.step()
            scheduler.step()


def test_recipe_experiment_is_exactly_the_recorded_overrides() -> None:
    """experiments/recipe_seed_cnn/ ran these overrides on the default config; the experiment file
    must compose to the same training config, so its command reproduces the recorded runs."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    recorded = [
        "data.batch_size=64", "loss.label_smoothing=0.1", "data.hflip=true", "model.tta_hflip=true",
        "callbacks.ema={_target_:src.callbacks.ema.EMA,decay:0.999}",
    ]  # fmt: skip
    by_hand = OmegaConf.to_container(compose_config(recorded))
    by_file = OmegaConf.to_container(compose_config(["experiment=recipe_seed_cnn"]))
    assert by_hand == by_file
