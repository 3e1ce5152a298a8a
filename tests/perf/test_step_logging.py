"""The training step logs less often but the loggers see the same values at the same steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.loggers.logger import Logger

from src.callbacks.history import EpochHistory
from src.training.model import MarginClassifier
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


class PerStepEpochLogging(MarginClassifier):
    """The training step as it was before the epoch figures moved to device sums: ``self.log`` of the
    loss and the batch accuracy on every step with ``on_epoch=True``, Lightning averaging them."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        embeddings = self.embed(images)
        loss = self.head(embeddings, labels)
        with torch.no_grad():
            accuracy = (self.head.predict(embeddings.detach()) == labels).float().mean()
        n = int(labels.shape[0])
        if self._loggers_read_this_step():
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
        self.log("train/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        return loss

    def on_train_epoch_end(self) -> None:
        pass

    def log_train_epoch(self) -> None:
        pass


class Recording(MarginClassifier):
    """Notes every trained batch: (epoch, loss, images, correct), read on the host."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[int, float, int, int]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        predict, noted = self.head.predict, []

        def spy(embeddings: torch.Tensor) -> torch.Tensor:
            noted.append(predict(embeddings))
            return noted[-1]

        object.__setattr__(self.head, "predict", spy)
        try:
            loss = super().training_step(batch, batch_idx)
        finally:
            object.__delattr__(self.head, "predict")
        correct = int((noted[0] == batch[1]).sum())
        self.batches.append((self.current_epoch, float(loss.detach()), int(batch[1].shape[0]), correct))
        return loss


class StopAt(pl.Callback):
    """Writes a checkpoint after batch ``batch`` of epoch ``epoch``, then ends the run (an interruption)."""

    def __init__(self, epoch: int, batch: int, path: Path) -> None:
        self.epoch, self.batch, self.path = epoch, batch, path

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        if trainer.current_epoch == self.epoch and idx == self.batch:
            trainer.save_checkpoint(self.path)
            raise Interrupted


class Interrupted(Exception):
    pass


class StopEarly(pl.Callback):
    """Sets ``trainer.should_stop`` after batch ``batch`` of epoch ``epoch`` (as an early-stopping rule would)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        if trainer.current_epoch == self.epoch and idx == self.batch:
            trainer.should_stop = True


def fit(cfg: Any, cls: type[MarginClassifier], tmp_path: Path, stop: pl.Callback | None = None,
        ckpt_path: Path | None = None) -> tuple[MarginClassifier, Capture, EpochHistory]:
    """Fit a fresh ``cls`` module (seeded, so every call starts from the same weights) with the LR
    monitor, EpochHistory and a capturing logger; an interruption by ``stop`` is swallowed."""
    pl.seed_everything(0, verbose=False)
    datamodule, built = build(cfg)
    model = cls(built.backbone, built.head, optimizer=built.optimizer_factory, scheduler=built.scheduler_factory)
    capture, history = Capture(), EpochHistory()
    callbacks = [instantiate(cfg.callbacks.learning_rate), history, *([stop] if stop else [])]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[capture], limit_val_batches=1,
                                      enable_checkpointing=False, default_root_dir=str(tmp_path))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except Interrupted:
        assert isinstance(stop, StopAt)
    return model, capture, history


def epoch_values(capture: Capture) -> list[tuple[int, float, float]]:
    return [(step, m["train/loss_epoch"], m["train/acc"]) for step, m in capture.calls if "train/acc" in m]


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def by_hand(batches: list[tuple[int, float, int, int]]) -> list[tuple[float, float]]:
    """Per epoch: sum of loss x images / images, correct / images."""
    out = []
    for epoch in sorted({e for e, *_ in batches}):
        rows = [b for b in batches if b[0] == epoch]
        images = sum(n for _, _, n, _ in rows)
        out.append((sum(loss * n for _, loss, n, _ in rows) / images, sum(c for *_, c in rows) / images))
    return out


@pytest.mark.parametrize("limit", [None, 7])
def test_epoch_sums_log_what_per_step_logging_logged_and_the_hand_computed_figures(tiny_config, tmp_path,
                                                                                    limit) -> None:
    """Same tags at the same steps with the same values as the per-step ``self.log`` calls (up to float
    rounding), with and without ``limit_train_batches``, and the epoch's mean loss and exact accuracy."""
    extra = [f"trainer.limit_train_batches={limit}"] if limit else []
    cfg = tiny_config("trainer.max_epochs=3", "trainer.log_every_n_steps=3", "callbacks.embeddings=null", *extra)
    new, new_capture, new_history = fit(cfg, Recording, tmp_path / "new")
    _, old_capture, old_history = fit(cfg, PerStepEpochLogging, tmp_path / "old")
    assert [(s, sorted(m)) for s, m in new_capture.calls] == [(s, sorted(m)) for s, m in old_capture.calls]
    for (s, m), (_, old) in zip(new_capture.calls, old_capture.calls, strict=True):
        assert all(close(m[k], old[k]) for k in m), (s, m, old)
    assert len(new_history.epochs) == 3 and [sorted(r) for r in new_history.epochs] == [
        sorted(r) for r in old_history.epochs]
    for row, old_row in zip(new_history.epochs, old_history.epochs, strict=True):
        assert all(close(row[k], old_row[k]) for k in row)
    assert len(new.batches) == 3 * (limit or 10)
    hand = by_hand(new.batches)
    values = epoch_values(new_capture)
    assert len(values) == 3 and all(
        close(loss, h_loss) and close(acc, h_acc) for (_, loss, acc), (h_loss, h_acc) in zip(values, hand, strict=True))
    assert [(r["train/loss"], r["train/acc"]) for r in new_history.epochs] == [(v[1], v[2]) for v in values]


def test_a_run_resumed_mid_epoch_counts_each_trained_batch_once(tiny_config, tmp_path) -> None:
    """Interrupted after batch 3 of epoch 1 (a checkpoint written at that batch's end), then resumed: the
    resumed epoch's figures cover the batches trained after the resume (Lightning keeps no logged values
    in checkpoints, so per-step logging did the same), nothing leaks from the interrupted process or
    from epoch to epoch, and the values match per-step logging through the same interruption."""
    cfg = tiny_config("trainer.max_epochs=3", "trainer.log_every_n_steps=3", "callbacks.embeddings=null",
                      "trainer.limit_train_batches=8")
    values = {}
    for cls in (Recording, PerStepEpochLogging):
        ckpt = tmp_path / f"{cls.__name__}.ckpt"
        first, first_capture, _ = fit(cfg, cls, tmp_path / cls.__name__, stop=StopAt(1, 3, ckpt))
        resumed, capture, history = fit(cfg, cls, tmp_path / cls.__name__, ckpt_path=ckpt)
        values[cls] = (epoch_values(first_capture), epoch_values(capture), history.epochs)
        if cls is Recording:
            assert [e for e, *_ in first.batches] == [0] * 8 + [1] * 4
            assert [e for e, *_ in resumed.batches] == [1] * 4 + [2] * 8
            hand = by_hand(resumed.batches)
    (first_new, new, history_new), (first_old, old, _) = values[Recording], values[PerStepEpochLogging]
    assert len(first_new) == 1 == len(first_old) and len(new) == 2 == len(old)
    for (step, loss, acc), (old_step, old_loss, old_acc), (h_loss, h_acc) in zip(new, old, hand, strict=True):
        assert step == old_step and close(loss, old_loss) and close(acc, old_acc)
        assert close(loss, h_loss) and close(acc, h_acc)
    # EpochHistory's rows come back from the checkpoint (epoch 0), then the resumed epochs' figures.
    assert [r["epoch"] for r in history_new] == [0, 1, 2]
    assert [(r["train/loss"], r["train/acc"]) for r in history_new[1:]] == [(loss, acc) for _, loss, acc in new]


def test_an_epoch_stopped_early_logs_the_batches_it_trained(tiny_config, tmp_path) -> None:
    """``trainer.should_stop`` set after batch 3 of epoch 1: that epoch's figures cover its 4 batches."""
    cfg = tiny_config("trainer.max_epochs=3", "trainer.log_every_n_steps=3", "callbacks.embeddings=null")
    new, capture, history = fit(cfg, Recording, tmp_path / "new", stop=StopEarly(1, 3))
    _, old_capture, _ = fit(cfg, PerStepEpochLogging, tmp_path / "old", stop=StopEarly(1, 3))
    assert [e for e, *_ in new.batches] == [0] * 10 + [1] * 4
    values, old = epoch_values(capture), epoch_values(old_capture)
    assert len(values) == 2 == len(old) and len(history.epochs) == 2
    for (step, loss, acc), (old_step, old_loss, old_acc), (h_loss, h_acc) in zip(values, old, by_hand(new.batches),
                                                                                strict=True):
        assert step == old_step and close(loss, old_loss) and close(acc, old_acc)
        assert close(loss, h_loss) and close(acc, h_acc)


def test_nonfinite_guard_reads_its_buffer_when_full_and_names_the_first_bad_step() -> None:
    """One copy per step into a buffer of check_loss_every_n_steps slots; a full buffer is read first."""
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
