"""Evaluate a finished run again from its checkpoint, without training (``python -m src.evaluate``).

A path names its runs (``find_targets``): a checkpoint file (its run folder is the one above the
checkpoints), a run folder, or any folder above run folders (a sweep), searched recursively.

The run's own resolved config builds the data and model (``src.training.pipeline.build``); the
checkpoint is read with ``weights_only=True`` (``src.training.checkpointing.load_checked``: a damaged file
is a one-line ``CheckpointError``). The model's weights and the data's normalisation statistics
(saved in the checkpoint; recomputed from the training split when absent) are restored; the test
set is run once through the same label-free ``test_step`` as after training, then every analysis
(``run_analyses``: geometry, retrieval metrics, open-set check). Nothing is selected here.

The result goes into the run folder (``RunFolder.evaluation``: one file for the best checkpoint,
one per other checkpoint), with the same keys as the run record; the training record and its
history are never touched. It records how many test images it scored (``test_images``: all of the
run's test set) beside how many the run's own test scored (``training_test_images``, which
``trainer.limit_test_batches`` may have cut); ``python -m src.report`` shows the figure on more images
and says which one it is. A run folder this process cannot write (a read-only mount) is refused in one
line before anything is computed; nothing is ever written into it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src.analysis.embeddings import run_analyses
from src.callbacks.confusion import ConfusionMatrixLogger
from src.errors import CheckpointError, EvaluationError, RunFolderError
from src.runs.folder import CONFIG, RunFolder, find_runs
from src.training.checkpointing import load_checked
from src.training.pipeline import build
from src.training.records import git_commit, machine_description
from src.utils.hardware import device_kind, resolve_precision
from src.utils.io import write_json_atomic


@dataclass(frozen=True)
class Target:
    """One run to evaluate; ``checkpoint`` is None for the run's own best checkpoint."""

    run_dir: Path
    checkpoint: Path | None = None


def find_targets(path: str | Path) -> list[Target]:
    """The runs ``path`` names (see the module docstring); raises ``EvaluationError`` when none."""
    path = Path(path)
    if path.is_file():
        folder = RunFolder.of_checkpoint(path)
        if not folder.config.is_file():
            raise EvaluationError(f"{path}: no {CONFIG} in {folder}, so this is not a run's checkpoint")
        return [Target(folder.path.resolve(), path.resolve())]
    if not path.is_dir():
        raise EvaluationError(f"{path}: no such file or folder")
    if RunFolder(path).config.is_file():
        return [Target(path.resolve())]
    found = [Target(folder.path) for folder in find_runs(path) if folder.config.is_file()]
    if not found:
        raise EvaluationError(f"{path}: no run folder below it (a run folder holds {CONFIG})")
    return found


def load_config(run_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The run's resolved config with ``key=value`` overrides of keys it already has."""
    folder = RunFolder(run_dir)
    try:
        resolved = folder.read_config()  # components whose module moved since the run under their new paths
    except RunFolderError as err:
        raise EvaluationError(str(err)) from None
    if resolved is None:
        raise EvaluationError(f"{run_dir}: no {CONFIG}")
    cfg = OmegaConf.create(resolved)
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
            raise EvaluationError(f"override {item!r} is invalid: {key} is not a key of {folder.config}") from None
    return cfg


def output_path(folder: RunFolder, checkpoint: Path, best: Path | None) -> Path:
    """The best checkpoint's evaluation file, or the one named after ``checkpoint``."""
    if best is not None and checkpoint.resolve() == best.resolve():
        return folder.evaluation()
    return folder.evaluation(checkpoint)


def evaluate(target: Target, overrides: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Evaluate one run; returns the written file and its content. Raises ``EvaluationError`` or
    ``CheckpointError`` (one line each) when the run cannot be evaluated."""
    started = time.time()
    run_dir = target.run_dir
    folder = RunFolder(run_dir)
    _check_writable(folder)  # before minutes of testing: a read-only run folder is read, never written
    record = folder.readable_record()
    cfg = load_config(run_dir, overrides)
    try:
        best: Path | None = folder.best_checkpoint(record)
    except EvaluationError:
        if target.checkpoint is None:
            raise
        best = None
    checkpoint = target.checkpoint or best
    assert checkpoint is not None
    state = load_checked(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {checkpoint} holds no state_dict: not a checkpoint of a training run")

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
    # How many test images the figures come from: all of the run's test set (no limit_test_batches
    # here), which the run's own test may have cut short; its count is its confusion matrix's total.
    metrics["test_images"] = int(confusion.sum()) if confusion is not None else None
    metrics.update(run_analyses(trainer, model, datamodule, cfg.get("analysis")))

    out = output_path(folder, checkpoint, best)
    evaluation = {
        "status": "finished",
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": machine_description(),
        "torch": torch.__version__,
        "checkpoint": _relative(checkpoint, run_dir),
        "best_checkpoint": out == folder.evaluation(),
        "overrides": list(overrides),
        "precision": precision,
        "training_status": record.get("status"),
        "training_test_acc": record.get("test_acc"),
        "training_test_images": recorded_test_images(record),
        "training_limit_test_batches": trainer_cfg.get("limit_test_batches"),
        **metrics,
        "wall_time_s": round(time.time() - started, 2),
    }
    write_json_atomic(out, evaluation)
    return out, evaluation


def recorded_test_images(record: dict[str, Any]) -> int | None:
    """How many test images a run record's (or an evaluation's) test figures come from: its
    ``test_images``, else the total of its test confusion matrix; None when it holds neither."""
    count = record.get("test_images")
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    matrix = record.get("test_confusion")
    if not isinstance(matrix, list) or not matrix:
        return None
    cells = [cell for row in matrix if isinstance(row, list) for cell in row]
    if len(cells) != len(matrix) ** 2 or not all(isinstance(c, int) and not isinstance(c, bool) for c in cells):
        return None
    return sum(cells) or None


def _check_writable(folder: RunFolder) -> None:
    """Refuse, in one line, a run folder this process cannot write its evaluation into."""
    if not folder.path.is_dir() or os.access(folder.path, os.W_OK):
        return
    try:
        why = "a read-only file system" if os.statvfs(folder.path).f_flag & os.ST_RDONLY else "no write permission"
    except OSError:
        why = "not writable"
    raise EvaluationError(
        f"{folder.evaluation()} cannot be written ({why}); nothing evaluated: copy the run folder somewhere "
        "writable (a copied run folder evaluates the same) and evaluate the copy")


def evaluation_precision(trainer_cfg: Any, record: dict[str, Any]) -> str:
    """The precision the run was tested with: for ``auto``, what training resolved it to (its record),
    else what ``auto`` means on this machine's device."""
    requested = str(trainer_cfg.get("precision", "32-true"))
    if requested != "auto":
        return requested
    trained = record.get("precision")
    if isinstance(trained, str) and trained and trained != "auto":
        return trained
    return resolve_precision("auto", device_kind(str(trainer_cfg.get("accelerator", "auto")))).precision


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
