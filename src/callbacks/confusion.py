"""Logs confusion-matrix figures to TensorBoard: validation every epoch, test once at the end."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from src.utils.plots import confusion_figure


def logged_step(trainer: pl.Trainer) -> int:
    """The step Lightning gives the scalars logged at this point (``val/acc`` ...), so that each
    figure sits on the same step as its epoch's validation scalars. During fitting that is the
    count of optimiser steps taken before the validation started (one less than ``global_step``
    when validation ends an epoch); Lightning keeps it in a private counter, read here, with
    ``global_step`` as the fallback."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(getattr(loop, "_batches_that_stepped", trainer.global_step))


class ConfusionMatrixLogger(pl.Callback):
    """Computes the module's ``val_confusion`` / ``test_confusion`` (synchronised across processes
    by torchmetrics), keeps the last matrices in the module's ``results`` (``StageResults``) and
    draws them on rank zero.

    ``title`` names the run in every figure, e.g. ``"arcface m=0.5"`` (conf/callbacks/default.yaml).
    """

    def __init__(self, title: str = "") -> None:
        self.title = str(title).strip()

    def _emit(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        metric = getattr(module, f"{stage}_confusion")
        matrix = metric.compute().cpu()
        metric.reset()
        if trainer.sanity_checking:
            return
        module.results.set_confusion(stage, matrix)
        if not trainer.is_global_zero:
            return
        when = f"val, epoch {trainer.current_epoch}" if stage == "val" else "test, best checkpoint"
        title = f"{self.title} · {when}" if self.title else when
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                fig = confusion_figure(matrix.numpy(), module.class_names, title)
                logger.experiment.add_figure(f"{stage}/confusion", fig, global_step=logged_step(trainer))
                plt.close(fig)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(trainer, pl_module, "test")
