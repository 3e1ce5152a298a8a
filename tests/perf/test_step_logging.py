"""The training step logs less often (issue #11.3) but the loggers see the same values at the same steps."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.loggers.logger import Logger

from src.training.pipeline import build


class Capture(Logger):
    """Every ``log_metrics`` call: (step, metric names)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((int(step or 0), dict(metrics)))


def test_loggers_get_the_step_loss_on_every_logging_step_and_exact_epoch_values(tiny_config, tmp_path) -> None:
    cfg = tiny_config("trainer.max_epochs=2", "trainer.log_every_n_steps=3", "callbacks.embeddings=null")
    datamodule, model = build(cfg)
    capture = Capture()
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=[instantiate(cfg.callbacks.learning_rate)],
                                      logger=[capture], limit_val_batches=1, enable_checkpointing=False,
                                      default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    # The LR monitor (lr-AdamW; train/lr in TensorBoard) logs on each logging step that Lightning chooses.
    lr_steps = [step for step, m in capture.calls if any(k.startswith("lr-") for k in m)]
    loss_steps = [step for step, m in capture.calls if "train/loss" in m]
    assert len(lr_steps) >= 5 and loss_steps == lr_steps == list(range(lr_steps[0], trainer.global_step, 3))
    epochs = [m for _, m in capture.calls if "train/acc" in m]
    assert len(epochs) == 2 and all("train/loss_epoch" in m for m in epochs)
    # An accuracy over 300 images in batches of 32 (the last of 12) is a multiple of 1/300, not a mean of batch means.
    assert all(abs(m["train/acc"] * 300 - round(m["train/acc"] * 300)) < 1e-3 for m in epochs)


def test_nonfinite_guard_reads_its_buffer_when_full_and_names_the_first_bad_step() -> None:
    """One copy per step into a buffer of check_loss_every_n_steps slots; a full buffer is read first."""
    import pytest
    import torch

    from src.callbacks.nonfinite import NonFiniteGuard
    from src.errors import NonFiniteError

    class Strategy:
        @staticmethod
        def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
            return decision

    class Trainer:
        strategy, current_epoch, global_step = Strategy(), 1, 0

    guard, trainer = NonFiniteGuard(check_loss_every_n_steps=2), Trainer()
    for batch, value in enumerate([0.5, 0.4, 0.3, float("nan"), float("inf")]):
        trainer.global_step = 10 + batch
        if batch == 4:  # the buffer holds batches 2 and 3: noting batch 4 reads it first
            with pytest.raises(NonFiniteError, match=r"loss is nan at epoch 1, batch 3 \(global step 13\)"):
                guard.note_loss(trainer, torch.tensor(value), batch)  # type: ignore[arg-type]
        else:
            guard.note_loss(trainer, torch.tensor(value), batch)  # type: ignore[arg-type]
