"""Exponential moving average of the weights, validated, checkpointed and tested as the model.

Lightning's ``EMAWeightAveraging`` does the averaging, the swap around validation and the
checkpoint layout (EMA weights in ``state_dict``, raw weights in ``current_model_state``). One
thing it gets wrong for this pipeline: ``trainer.test(ckpt_path="best")`` on the trainer that just
fitted calls its ``on_load_checkpoint`` with the averaged model still alive, which loads the *raw*
weights back, so the test would score a different model from the one validation selected. Here the
raw weights are restored only when fitting resumes; testing, validating and predicting use the
checkpoint's ``state_dict``, the EMA weights that earned the validation score.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.trainer.states import TrainerFn

from src.config.checks import fail, is_number


class EMA(EMAWeightAveraging):
    """``decay`` in (0, 1): weight of the running average per step (0.999 ~ the last 1000 steps)."""

    def __init__(self, decay: float = 0.999, update_starting_at_step: int | None = None, **kwargs: Any) -> None:
        if not (is_number(decay) and 0.0 < decay < 1.0):
            fail("callbacks.ema.decay", decay, "must be in (0, 1)")
        super().__init__(decay=float(decay), update_starting_at_step=update_starting_at_step, **kwargs)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
