"""Every OmegaConf resolver ``conf/`` uses, registered before a config is composed.

The generic ones (run folder names, labels) are ``src.utils.resolvers``'; ``data_shape`` reads the
configured data, so it is registered here, above the data it asks.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from src.config.suggest import settings_line
from src.utils import resolvers


def data_shape(what: str, *, _root_: Any) -> Any:
    """``${data_shape:channels}`` / ``${data_shape:image_size}``: the configured data's own channel
    count and image size (``src.data.inputs``), so that a backbone is never told them by hand."""
    from src.data.inputs import shape_value  # on first use: registering stays free of the data's imports

    return shape_value(what, _root_.data)


def register_resolvers() -> None:
    resolvers.register_resolvers()
    if not OmegaConf.has_resolver("data_shape"):
        OmegaConf.register_new_resolver("data_shape", data_shape)
    if not OmegaConf.has_resolver("config_keys"):  # --help lists the chosen loss's keys (conf/hydra/default.yaml)
        OmegaConf.register_new_resolver("config_keys", settings_line)
