"""Shared fixtures: a tiny synthetic Fashion-MNIST-shaped dataset and Hydra config composition."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from src.training.compose import register_resolvers
from tests.synthetic import make_synthetic_dataset

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
REPO = CONF_DIR.parent
register_resolvers()
# One thread per test process: on a shared 2-core machine two threads make tiny ops much slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_fmnist")
    make_synthetic_dataset(root, n_train=400, n_test=120, seed=0)
    return root


# Small and fast: ~300 training images, a few steps, no progress bar.
TINY = [
    "data.val_size=100",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=2",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",  # the same numbers on every CPU (auto picks bf16 where it is fast)
    "threads=1",  # as above: src.training.pipeline.configure_hardware would otherwise set all cores (threads=auto)
]


def compose_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose conf/train.yaml as ``python -m src.train`` would, with ``hydra:`` resolvers usable."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        hydra_cfg = cfg.pop("hydra")
    OmegaConf.resolve(hydra_cfg.runtime)  # keep runtime.choices for the run record
    return cfg


def train_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``python -m src.train <argv>`` in this process (runpy, as ``__main__``, so Hydra finds conf/
    as it does from the shell, and ``src.cli`` reports its errors as it does there); the exit
    status (0 when it returns). A fresh interpreter per command costs seconds of imports that a
    test of the command line's behaviour does not need."""
    import logging
    import runpy
    import sys

    import src.cli

    GlobalHydra.instance().clear()
    monkeypatch.setitem(src.cli._state, "job_started", False)  # as in a fresh process
    monkeypatch.setattr(sys, "argv", [str(REPO / "src" / "train.py"), *argv])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    disabled = {name: log.disabled for name, log in logging.root.manager.loggerDict.items()
                if isinstance(log, logging.Logger)}
    try:
        runpy.run_module("src.train", run_name="__main__", alter_sys=False)
    except SystemExit as err:
        return int(err.code or 0)
    finally:
        GlobalHydra.instance().clear()
        # Hydra's job logging (a file handler in the run folder) must not outlive the command: the
        # next test's log lines would go to a folder that may be gone.
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in disabled.items():
            logging.getLogger(name).disabled = was
    return 0


@pytest.fixture
def tiny_config(synthetic_root: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_config([f"data.root={synthetic_root}", *TINY, *overrides], output_dir=tmp_path / "run")

    return make


# Markers that make a test part of the long end-to-end group ("slow"), whoever marks it.
SLOW_MARKERS = ("cluster",)


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _restore_logging_handlers():
    """A test that runs ``src.train`` in this process leaves Hydra's job logging behind (a file
    handler on the run folder's train.log, which the test may delete): later tests in the same
    worker would log into a closed, removed file. Put every logger's handlers back as they were."""
    import logging

    def snapshot() -> dict[str, list[logging.Handler]]:
        loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger))]
        return {lg.name: list(lg.handlers) for lg in loggers}

    before = snapshot()
    yield
    for name, handlers in snapshot().items():
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        kept = before.get(name, [])
        for handler in handlers:
            if handler not in kept:
                logger.removeHandler(handler)
                handler.close()
        for handler in kept:
            if handler not in logger.handlers:
                logger.addHandler(handler)
