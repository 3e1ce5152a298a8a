"""A run whose loss or weights turn NaN / inf stops with a clear message, its record
says failed and why, and no diverged checkpoint is left to resume from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.callbacks.nonfinite import NonFiniteGuard
from src.errors import NonFiniteError
from src.training.pipeline import run
from tests.reliability.helpers import LEAN, record

POISON = "+callbacks.poison._target_=tests.reliability.helpers.PoisonWeight"


def test_exploding_loss_stops_the_run(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(*LEAN, "optimizer=sgd", "optimizer.lr=1e30", "trainer.limit_train_batches=4")
    with pytest.raises(NonFiniteError, match=r"training loss is (nan|inf)") as info:
        run(cfg, tmp_path / "run", checked=True)  # past the config pass, which refuses lr > 100: the guard is tested
    assert "\n" not in str(info.value) and "optimizer.lr" in str(info.value)  # says what to try
    rec = record(tmp_path / "run")
    assert rec["status"] == "failed" and rec["reason"].startswith("NonFiniteError: training diverged")


def test_nan_weight_is_caught_and_never_checkpointed(tiny_config, tmp_path: Path) -> None:
    # Loss checks off, weights checked only at epoch end and before each checkpoint.
    cfg = tiny_config(*LEAN, POISON, "callbacks.nonfinite.check_weights_every_n_steps=0",
                      "trainer.limit_train_batches=3", "callbacks.nonfinite.check_loss_every_n_steps=0")  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"weight \S+ holds nan values .*epoch 0") as info:
        run(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
    assert record(tmp_path / "run")["status"] == "failed"
    assert not list(tmp_path.glob("run/checkpoints/*.ckpt"))


def test_no_checkpoint_is_written_with_non_finite_weights() -> None:
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.bias[1] = float("inf")

    class Trainer:
        current_epoch, global_step = 1, 9

    with pytest.raises(NonFiniteError, match=r"weight bias holds inf values so the checkpoint was not written"):
        NonFiniteGuard().on_save_checkpoint(Trainer(), module, {})  # type: ignore[arg-type]


def test_weights_checked_every_n_steps(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(*LEAN, POISON, "callbacks.nonfinite.check_weights_every_n_steps=2",
                      "trainer.limit_train_batches=5", "callbacks.nonfinite.check_loss_every_n_steps=0")  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"after the optimizer step at epoch 0, global step 2"):
        run(cfg, tmp_path / "run")


class _Strategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


class _Trainer:
    """The three trainer attributes the loss check reads (one process: no collective)."""

    def __init__(self, current_epoch: int, global_step: int) -> None:
        self.strategy, self.current_epoch, self.global_step = _Strategy(), current_epoch, global_step


def _check(guard: NonFiniteGuard, trainer: _Trainer, loss: torch.Tensor | None, batch_idx: int) -> None:
    guard.note_loss(trainer, loss, batch_idx)  # type: ignore[arg-type]
    guard.read_loss(trainer)  # type: ignore[arg-type]


def test_guard_accepts_finite_values_and_rejects_bad_options() -> None:
    guard, trainer = NonFiniteGuard(), _Trainer(0, 7)
    _check(guard, trainer, torch.tensor(1.5), batch_idx=0)
    _check(guard, trainer, None, batch_idx=0)
    with pytest.raises(NonFiniteError, match="is inf at epoch 0, batch 3"):
        _check(guard, trainer, torch.tensor(float("inf")), batch_idx=3)
    with pytest.raises(ValueError):
        NonFiniteGuard(check_loss_every_n_steps=-1)


def test_loss_is_checked_on_device_every_step_and_read_later() -> None:
    """Between host reads every loss is still looked at: the message names the first bad step."""
    guard, trainer = NonFiniteGuard(check_loss_every_n_steps=50), _Trainer(2, 0)
    for batch, value in enumerate([0.7, 0.6, float("inf"), float("nan"), 0.5]):
        trainer.global_step = 100 + batch
        guard.note_loss(trainer, torch.tensor(value), batch)  # type: ignore[arg-type]
    with pytest.raises(NonFiniteError, match=r"loss is inf at epoch 2, batch 2 \(global step 102\)"):
        guard.read_loss(trainer)  # type: ignore[arg-type]


def test_default_interval_still_stops_a_short_diverging_epoch(tiny_config, tmp_path: Path) -> None:
    """With reads every 50 steps, a 4-step epoch that diverges is still stopped at its end."""
    cfg = tiny_config(*LEAN, "optimizer=sgd", "optimizer.lr=1e30", "trainer.limit_train_batches=4",
                      "callbacks.nonfinite.check_loss_every_n_steps=50",
                      "callbacks.nonfinite.check_weights_every_n_steps=0")  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"training loss is (nan|inf) at epoch 0, batch [1-3]"):
        run(cfg, tmp_path / "run", checked=True)  # lr=1e30: past the config pass (see above)
