"""Evaluate a finished run again from its checkpoint, without training (``python -m src.evaluate``).

The run's own ``config_resolved.yaml`` builds the data and model (``src.training.pipeline.build``); the
checkpoint is read with ``weights_only=True`` (``src.training.checkpointing.load_checked``: a damaged file
is a one-line ``CheckpointError``). The model's weights and the data's normalisation statistics
(saved in the checkpoint; recomputed from the training split when absent) are restored; the test
set is run once through the same label-free ``test_step`` as after training, then every analysis
(``run_analyses``: geometry, retrieval metrics, open-set check). Nothing is selected here.

The result goes to ``evaluation.json`` beside the run (``evaluation_<checkpoint>.json`` for a
checkpoint other than the best one), with the same keys as ``metrics.json``; the training record
and its history are never touched. ``python -m src.report`` prefers ``evaluation.json``'s figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.analysis.embeddings import run_analyses
from src.analysis.run_folders import CONFIG_NAME, Target, best_checkpoint, read_record
from src.callbacks.confusion import ConfusionMatrixLogger
from src.config.moved import upgrade
from src.errors import CheckpointError, EvaluationError
from src.training.checkpointing import load_checked
from src.training.records import git_commit, machine_description
from src.utils.io import write_json_atomic

EVALUATION_NAME = "evaluation.json"


def load_config(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's resolved config with ``key=value`` overrides of keys it already has."""
    try:
        cfg = OmegaConf.load(run_dir / CONFIG_NAME)
    except (OSError, OmegaConfBaseException, ValueError) as err:
        raise EvaluationError(f"{run_dir}: {CONFIG_NAME} unreadable ({type(err).__name__})") from None
    if not isinstance(cfg, DictConfig):
        raise EvaluationError(f"{run_dir}: {CONFIG_NAME} is not a mapping")
    cfg = OmegaConf.create(upgrade(OmegaConf.to_container(cfg)))  # components whose module moved since the run
    data = cfg.get("data")
    if isinstance(data, DictConfig) and "fallback" not in data:
        data.fallback = True  # runs from before data.fallback looked in the system folders after data.root
    OmegaConf.set_struct(cfg, True)  # an override may change a key, never invent one
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise EvaluationError(f"override {item!r} is invalid: must be key=value, e.g. trainer.accelerator=cpu")
        try:
            cfg.merge_with_dotlist([item])
        except OmegaConfBaseException:
            raise EvaluationError(f"override {item!r} is invalid: {key} is not a key of {run_dir / CONFIG_NAME}") \
                from None
    return cfg


def output_name(checkpoint: Path, best: Path | None) -> str:
    if best is not None and checkpoint.resolve() == best.resolve():
        return EVALUATION_NAME
    return f"evaluation_{checkpoint.stem}.json"


def evaluate(target: Target, overrides: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Evaluate one run; returns the written file and its content. Raises ``EvaluationError`` or
    ``CheckpointError`` (one line each) when the run cannot be evaluated."""
    started = time.time()
    run_dir = target.run_dir
    record = read_record(run_dir)
    cfg = load_config(run_dir, overrides)
    try:
        best: Path | None = best_checkpoint(run_dir, record)
    except EvaluationError:
        if target.checkpoint is None:
            raise
        best = None
    checkpoint = target.checkpoint or best
    assert checkpoint is not None
    state = load_checked(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {checkpoint} holds no state_dict: not a checkpoint of a training run")

    from src.training.pipeline import build  # lazy: src.training.pipeline imports the training stack

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision(str(cfg.get("matmul_precision", "highest")))
    datamodule, model = build(cfg)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {checkpoint} does not fit the run's config: {first}") from None
    data_state = state.get(type(datamodule).__qualname__)
    if isinstance(data_state, dict):
        datamodule.load_state_dict(data_state)
    else:  # older checkpoints: the statistics come from the training split, as in training
        datamodule.setup("fit")

    trainer_cfg = cfg.get("trainer") or {}
    precision = evaluation_precision(trainer_cfg, record)
    trainer = pl.Trainer(
        accelerator=trainer_cfg.get("accelerator", "auto"), devices=1, precision=precision,
        logger=False, callbacks=[ConfusionMatrixLogger()],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]
    metrics: dict[str, Any] = {key.replace("/", "_"): float(value) for key, value in results.items()}
    confusion = model.results.test_confusion
    if confusion is not None:
        metrics["test_confusion"] = confusion.tolist()
    metrics["class_names"] = model.class_names
    metrics.update(run_analyses(trainer, model, datamodule, cfg.get("analysis")))

    out = run_dir / output_name(checkpoint, best)
    evaluation = {
        "status": "finished",
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": machine_description(),
        "torch": torch.__version__,
        "checkpoint": _relative(checkpoint, run_dir),
        "best_checkpoint": out.name == EVALUATION_NAME,
        "overrides": list(overrides),
        "precision": precision,
        "training_status": record.get("status"),
        "training_test_acc": record.get("test_acc"),
        **metrics,
        "wall_time_s": round(time.time() - started, 2),
    }
    write_json_atomic(out, evaluation)
    return out, evaluation


def evaluation_precision(trainer_cfg: Any, record: dict[str, Any]) -> str:
    """The precision the run was tested with: for ``auto``, what training resolved it to (its record),
    else what ``auto`` means on this machine's device."""
    requested = str(trainer_cfg.get("precision", "32-true"))
    if requested != "auto":
        return requested
    trained = record.get("precision")
    if isinstance(trained, str) and trained and trained != "auto":
        return trained
    from src.config.validate import device_kind
    from src.utils.hardware import resolve_precision

    return resolve_precision("auto", device_kind(str(trainer_cfg.get("accelerator", "auto")))).precision


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
