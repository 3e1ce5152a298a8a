"""Builds data, model, callbacks and trainer from a composed config, then fits and tests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from src.analysis.embeddings import run_analyses
from src.callbacks.history import EpochHistory
from src.callbacks.signals import interruption
from src.config_checks import check_and_record
from src.model import MarginClassifier
from src.records import RunRecord
from src.tb.final import log_final
from src.utils.io import write_text_atomic

log = logging.getLogger(__name__)


def build(cfg: DictConfig) -> tuple[pl.LightningDataModule, MarginClassifier]:
    datamodule = instantiate(cfg.data)
    backbone = instantiate(cfg.backbone)
    head = instantiate(cfg.loss, embedding_dim=cfg.model.embedding_dim, num_classes=datamodule.num_classes)
    model = MarginClassifier(
        backbone, head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        class_names=datamodule.class_names,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        tta_hflip=cfg.model.tta_hflip,
    )
    return datamodule, model


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Train, select the best validation checkpoint, test it once; returns the final metrics."""
    output_dir.mkdir(parents=True, exist_ok=True)
    check_and_record(cfg, output_dir)  # ConfigError (record: failed) before any data is read
    write_text_atomic(output_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    record = RunRecord(
        output_dir, name=cfg.name, seed=int(cfg.seed), loss=_choice("loss"), backbone=_choice("backbone"),
        loss_params={k: v for k, v in OmegaConf.to_container(cfg.loss, resolve=True).items() if k != "_target_"},
        data=str(cfg.data.name), experiment=_choice("experiment"),
    )
    try:
        metrics = _fit_and_test(cfg, output_dir, record)
    except KeyboardInterrupt:
        record.finish("interrupted", reason="KeyboardInterrupt")
        raise
    except SystemExit as err:  # Lightning ends Ctrl-C with sys.exit(1), SIGTERM with SIGTERMException
        how = interruption(err)
        if how is None:
            record.finish("failed", reason=f"SystemExit: {err.code}")
            raise
        record.finish("interrupted", reason=how[0])
        raise SystemExit(how[1]) from err
    except BaseException as err:
        record.finish("failed", reason=f"{type(err).__name__}: {err}")
        raise
    return metrics


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _fit_and_test(cfg: DictConfig, output_dir: Path, record: RunRecord) -> dict[str, Any]:
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    datamodule, model = build(cfg)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    plugins = [instantiate(cfg.checkpoint_io)] if cfg.get("checkpoint_io") else None  # atomic, weights_only
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, plugins=plugins)

    last = output_dir / "checkpoints" / "last.ckpt"
    resume_from = str(last) if cfg.get("resume") and last.exists() else None
    if cfg.get("resume") and resume_from is None:
        log.warning("resume=true but %s does not exist: starting this run from scratch", last)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    if trainer.interrupted:
        raise KeyboardInterrupt

    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    history = next((c for c in callbacks if isinstance(c, EpochHistory)), None)
    best_score = checkpoint.best_model_score if checkpoint else None
    metrics: dict[str, Any] = {
        "val_acc_best": float(best_score) if best_score is not None else float("nan"),
        "best_checkpoint": str(checkpoint.best_model_path) if checkpoint else None,
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "history": history.epochs if history else [],
        "class_names": model.class_names,
    }
    record.update(**metrics)

    if cfg.test:
        ckpt = "best" if checkpoint and checkpoint.best_model_path else None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)[0]
        metrics.update({key.replace("/", "_"): float(value) for key, value in results.items()})
        confusion = getattr(model, "last_test_confusion", None)
        if confusion is not None:
            metrics["test_confusion"] = confusion.tolist()
        record.update(**metrics)  # kept even if the analyses below are killed
        # Test-set geometry and (with held-out classes) the open-set check; never fails the run.
        metrics.update(run_analyses(trainer, model, datamodule, cfg.get("analysis")))

    log_final(loggers, cfg, metrics)  # HParams session, final scalars, text summary (src/tb/final.py)
    record.finish("finished", **metrics)
    return metrics
