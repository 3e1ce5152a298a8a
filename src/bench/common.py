"""What both benchmarks share: the config as ``python -m src.train`` composes it, the device, the
bare loop's autocast, and a quiet Lightning."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.config import CONF_DIR
from src.training.compose import register_resolvers
from src.training.pipeline import configure_hardware

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def compose_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` composed as ``python -m src.train`` would, with ``hydra:`` resolvers
    pointing at ``output_dir`` (where the runs' checkpoints and TensorBoard files go)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
        # The same precision, threads and flush-to-zero choices as src.train makes (configure_hardware).
        hardware = configure_hardware(cfg)
        cfg.trainer.precision = hardware["precision"]
        cfg.hardware = hardware
    return cfg


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device={device!r} is invalid: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device=cuda but torch.cuda.is_available() is False")
    return device


def autocast_for(precision: str, device: str) -> tuple[Callable[[], AbstractContextManager], bool]:
    """What Lightning's precision plugin puts around the forward pass, for the bare loop:
    (context factory, whether a GradScaler is needed)."""
    p = str(precision)
    if p in ("32-true", "32"):
        return nullcontext, False
    if p == "bf16-mixed":
        return (lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)), False
    if p in ("16-mixed", "16"):
        if device != "cuda":
            raise SystemExit("error: precision 16-mixed needs CUDA; on CPU use bf16-mixed or 32-true")
        return (lambda: torch.autocast(device_type=device, dtype=torch.float16)), True
    raise SystemExit(f"error: the bare loop supports precision 32-true, bf16-mixed and 16-mixed, not {p!r}")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def quiet_lightning() -> None:
    """Drop Lightning's per-Trainer banners and the warnings a short, validation-free fit is
    expected to raise: a benchmark builds many trainers."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (".*smaller than the logging interval.*", ".*could not find the monitored key.*",
                    ".*exists and is not empty.*", ".*LeafSpec.*is deprecated.*",
                    ".*have no `validation_step`.*"):
        warnings.filterwarnings("ignore", message=message)


def write_results(path: Path, results: dict[str, Any]) -> None:
    """The benchmark's JSON, written atomically (a killed benchmark never leaves half a file)."""
    from src.utils.io import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, results)
