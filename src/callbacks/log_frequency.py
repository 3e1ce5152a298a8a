"""Step logging that fits the run: at least a few ``train/loss`` and ``train/lr`` points per epoch.

``trainer.log_every_n_steps: 50`` suits the full dataset (~420 batches an epoch), but a short run
(5,000 images: 40 batches) would log one point per epoch and Lightning would warn about it. When fitting
is set up this callback lowers the interval to ``min(configured, max(1, batches_per_epoch // points))``;
it never raises it, so Lightning's own logging and a user's smaller value stay as they are.
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def adapted_interval(configured: int, batches_per_epoch: int, points: int) -> int:
    """The step-logging interval that gives at least ``points`` logged steps per epoch."""
    if batches_per_epoch <= 0 or points <= 0:
        return configured
    return max(1, min(configured, batches_per_epoch // points))


def _batches_per_epoch(trainer: pl.Trainer) -> int:
    """Training batches an epoch will run, known at fit start (before Lightning counts them)."""
    datamodule = trainer.datamodule
    if datamodule is None:
        return 0
    try:
        total = len(datamodule.train_dataloader())
    except TypeError:  # an iterable without a length: keep the configured interval
        return 0
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        return min(total, limit)
    return total if limit is None or limit >= 1.0 else max(1, math.floor(total * float(limit)))


class AdaptiveLogInterval(pl.Callback):
    """Sets ``trainer.log_every_n_steps`` from the epoch's length (see the module docstring)."""

    def __init__(self, points_per_epoch: int = 3) -> None:
        self.points_per_epoch = int(points_per_epoch)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # setup, not on_fit_start: a scheduler's estimated_stepping_batches counts the batches (and
        # Lightning compares them with the interval) before on_fit_start runs.
        if stage != "fit":
            return
        configured = int(trainer.log_every_n_steps)
        interval = adapted_interval(configured, _batches_per_epoch(trainer), self.points_per_epoch)
        if interval != configured:
            log.info("step logging every %d steps (trainer.log_every_n_steps=%d gives fewer than %d points "
                     "an epoch)", interval, configured, self.points_per_epoch)
            trainer.log_every_n_steps = interval
