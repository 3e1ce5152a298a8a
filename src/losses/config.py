"""A loss's YAML as Hydra composes it, for use without the Trainer (notebooks, tests)."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from src.config import CONF_DIR, group_options
from src.errors import ConfigError


def loss_config(name: str) -> DictConfig:
    """``conf/loss/<name>.yaml`` composed by Hydra, so variants that inherit (``sphereface_norm``
    extends ``sphereface``) come out whole; ``instantiate(loss_config("arcface"), embedding_dim=D,
    num_classes=C)`` builds the head."""
    if not (CONF_DIR / "loss" / f"{name}.yaml").is_file():
        options = ", ".join(group_options("loss"))
        raise ConfigError(f"loss={name} is not an option of the 'loss' config group; valid: {options}")
    initialized = GlobalHydra.instance().is_initialized()
    if initialized:  # inside a Hydra app: compose without disturbing its global state
        return compose(config_name=f"loss/{name}").loss
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=f"loss/{name}").loss
