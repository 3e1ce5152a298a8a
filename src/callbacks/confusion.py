"""Logs confusion-matrix figures to TensorBoard: validation every epoch, test once at the end."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from src.plots import confusion_figure


class ConfusionMatrixLogger(pl.Callback):
    """Computes the module's ``val_confusion`` / ``test_confusion`` (synchronised across processes
    by torchmetrics), keeps the last matrices on the module and draws them on rank zero."""

    def _emit(self, trainer: pl.Trainer, module: pl.LightningModule, stage: str) -> None:
        metric = getattr(module, f"{stage}_confusion")
        matrix = metric.compute().cpu()
        metric.reset()
        if trainer.sanity_checking:
            return
        setattr(module, f"last_{stage}_confusion", matrix)
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                title = f"{stage} epoch {trainer.current_epoch}" if stage == "val" else "test (best checkpoint)"
                fig = confusion_figure(matrix.numpy(), module.class_names, title)
                logger.experiment.add_figure(f"{stage}/confusion", fig, global_step=trainer.global_step)
                plt.close(fig)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._emit(trainer, pl_module, "test")
