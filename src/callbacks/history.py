"""Keeps the per-epoch metric curve (for the run record and the report's accuracy curves)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl


class EpochHistory(pl.Callback):
    KEYS = ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_macro",
            # Present only when the reference-protocol audit runs (src/callbacks/reference_audit.py).
            "audit/test_acc_reference_protocol", "audit/test_acc_label_free")

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        # Told every finished epoch's rows (src.training.pipeline writes them to the run record at once).
        self.listener: Callable[[list[dict[str, float]]], None] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The module keeps its epoch figures on the device and logs them once per epoch, from its own
        # on_train_epoch_end, which Lightning calls after this hook: have them logged now.
        log_train_epoch = getattr(pl_module, "log_train_epoch", None)
        if callable(log_train_epoch):
            log_train_epoch()
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key in self.KEYS:
            if key in trainer.callback_metrics:
                row[key.replace("_epoch", "")] = float(trainer.callback_metrics[key])
        self.epochs.append(row)
        if self.listener is not None and trainer.is_global_zero and not trainer.sanity_checking:
            self.listener(list(self.epochs))

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epochs = list(state_dict.get("epochs", []))
