"""Hydra callback: records which keys a multirun sweeps, so job folders can be named by them."""

from __future__ import annotations

import os
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.utils.resolvers import SWEPT_ENV, override_key


def sweep_keys(task_overrides: list[str], sweeper_params: dict[str, Any] | None) -> list[str]:
    """Keys with more than one value: command-line sweeps (``loss.m=2,4,6``, ``range(...)``, ...)
    first, in the order typed, then the sweeper's own ``params`` (Optuna search spaces too)."""
    keys: list[str] = []
    parser = OverridesParser.create()
    for override in parser.parse_overrides(list(task_overrides)):
        if override.is_sweep_override() and not override.is_hydra_override():
            keys.append(override_key(override.get_key_element()))
    for key, value in (sweeper_params or {}).items():
        spec = str(value)
        # A params entry with one plain value is not a sweep; anything else (a list, a range, an
        # interval for Optuna) is, whether or not the basic parser can read it.
        try:
            (parsed,) = parser.parse_overrides([f"{key}={spec}"])
            is_sweep = parsed.is_sweep_override()
        except Exception:
            is_sweep = True
        if is_sweep and override_key(key) not in keys:
            keys.append(override_key(key))
    return keys


class SweptKeys(Callback):
    """Sets ``MARGINLOSS_SWEPT_KEYS`` before the first job of a multirun (read by ``job_subdir``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        params = hydra_cfg.sweeper.get("params") if "sweeper" in hydra_cfg else None
        params = OmegaConf.to_container(params, resolve=False) if params is not None else None
        keys = sweep_keys(list(hydra_cfg.overrides.task), params)
        os.environ[SWEPT_ENV] = ",".join(keys)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEPT_ENV, None)  # a later sweep in the same process starts clean
