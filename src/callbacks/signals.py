"""SIGTERM and Ctrl-C save a checkpoint before the run exits, so ``resume=true`` loses little.

Lightning 2.x already stops cleanly on SIGTERM: its signal handler sets a flag, the loop finishes
the current batch and raises ``SIGTERMException``. Ctrl-C raises ``KeyboardInterrupt`` wherever the
main thread is; Lightning catches it, runs the callbacks' ``on_exception`` and calls ``sys.exit(1)``.
Neither writes a checkpoint (``ModelCheckpoint(save_on_exception=True)`` would, but for every
exception, a diverged run included, and under a "best-..." name). ``CheckpointOnInterrupt`` writes
the ModelCheckpoint's ``last.ckpt`` on those two interruptions only.

A checkpoint written mid-epoch resumes mid-epoch: the epoch's remaining batches are taken from the
start of that epoch's order (the batches are not a stateful loader), so a resumed run matches an
uninterrupted one exactly only when it resumes from an end-of-epoch ``last.ckpt`` (e.g. after a
SIGKILL). ``interruption`` tells ``src.pipeline`` how a run ended: record status ``interrupted``
and exit code 130 (Ctrl-C) or 143 (SIGTERM).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, as shells report them


def interruption(err: BaseException) -> tuple[str, int] | None:
    """(reason, exit code) when ``err`` is how Lightning ends a run on SIGTERM or Ctrl-C, else None."""
    if isinstance(err, SIGTERMException):
        return "SIGTERM", EXIT_SIGTERM
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt", EXIT_SIGINT
    if isinstance(err, SystemExit) and err.code == 1:  # Lightning's sys.exit(1) after a KeyboardInterrupt
        return "KeyboardInterrupt", EXIT_SIGINT
    return None


class CheckpointOnInterrupt(pl.Callback):
    def __init__(self) -> None:
        self.saved_path: str | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        sigterm = isinstance(exception, SIGTERMException)
        if not (sigterm or isinstance(exception, KeyboardInterrupt)):
            return
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.global_step == 0:
            return
        if not sigterm and trainer.world_size > 1:
            # Ctrl-C reaches the ranks at different points: a collective save could wait forever.
            log.warning("Ctrl-C under DDP: no interrupt checkpoint (send SIGTERM to stop with one)")
            return
        checkpoint = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        if checkpoint is None or not checkpoint.dirpath:
            return
        if getattr(checkpoint, "_last_global_step_saved", -1) == trainer.global_step:
            return  # the current state is already in last.ckpt
        path = os.path.join(checkpoint.dirpath, checkpoint.CHECKPOINT_NAME_LAST + checkpoint.FILE_EXTENSION)
        trainer.save_checkpoint(path)
        checkpoint.last_model_path = path
        self.saved_path = path
        reason = "SIGTERM" if sigterm else "Ctrl-C"
        log.warning(f"{reason}: saved {path} at global step {trainer.global_step}; resume with resume=true")

    def state_dict(self) -> dict[str, Any]:
        return {}
