"""Test-only fault injection from inside a run: a signal delivered at a chosen point of its progress."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class SignalAt(pl.Callback):
    """Sends ``signal`` (a name: SIGTERM, SIGINT, SIGKILL) to this process once, at ``stage`` (train |
    validation) batch ``batch`` of epoch ``epoch``, after that batch; ``times`` > 1 sends it that many
    times back to back (two Ctrl-Cs)."""

    def __init__(self, signal: str, stage: str, epoch: int, batch: int, times: int = 1) -> None:
        self.signal, self.stage, self.epoch, self.batch, self.times = signal, stage, int(epoch), int(batch), int(times)
        self.sent = False

    def _maybe(self, trainer: pl.Trainer, stage: str, batch_idx: int) -> None:
        if self.sent or trainer.sanity_checking or stage != self.stage:
            return
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.sent = True
            for _ in range(self.times):
                os.kill(os.getpid(), getattr(signal, self.signal))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._maybe(trainer, "train", batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:  # fmt: skip
        self._maybe(trainer, "validation", batch_idx)


def signal_overrides(name: str, stage: str, epoch: int, batch: int, times: int = 1) -> list[str]:
    """The overrides that add ``SignalAt`` to a run (the resume must repeat them: same config)."""
    return ["+callbacks.fault._target_=tests.reliability.faults.SignalAt", f"+callbacks.fault.signal={name}",
            f"+callbacks.fault.stage={stage}", f"+callbacks.fault.epoch={epoch}", f"+callbacks.fault.batch={batch}",
            f"+callbacks.fault.times={times}"]  # fmt: skip


class SignalWhenArmed(pl.Callback):
    """Sends ``signal`` to this process during a run's start-up, once, when the file ``armed`` exists:
    its text names the point, ``init`` (the callbacks are built, after the data and the model) or
    ``load`` (the fit has read the checkpoint it resumes from, before the training state is restored
    and before Lightning's own SIGTERM handler is installed). The file is removed as the signal is
    sent, so the config stays the same across the segments and the next start runs."""

    def __init__(self, signal: str, armed: str) -> None:
        self.signal, self.armed = signal, armed
        self._maybe("init")

    def _maybe(self, point: str) -> None:
        path = Path(self.armed)
        if path.is_file() and path.read_text().strip() == point:
            path.unlink()
            os.kill(os.getpid(), getattr(signal, self.signal))

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        self._maybe("load")


def armed_signal_overrides(name: str, armed: Path) -> list[str]:
    """The overrides that add ``SignalWhenArmed`` (every segment of the run must repeat them)."""
    return ["+callbacks.startup_fault._target_=tests.reliability.faults.SignalWhenArmed",
            f"+callbacks.startup_fault.signal={name}", f"+callbacks.startup_fault.armed={armed}"]


class SecondCtrlCWhileSaving(pl.Callback):
    """Two Ctrl-Cs, the second while the first one's checkpoint is being written: SIGINT after
    training batch ``batch`` of epoch ``epoch``, then SIGINT again from inside the next checkpoint
    save (``on_save_checkpoint`` runs as the file's contents are gathered, before it is written).
    Only while the file ``armed`` exists (removed as the first is sent), so a resume with the same
    config runs through."""

    def __init__(self, epoch: int, batch: int, armed: str) -> None:
        self.epoch, self.batch, self.armed = int(epoch), int(batch), Path(armed)
        self.first_sent = self.second_sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.first_sent or not self.armed.is_file():
            return
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.armed.unlink()
            self.first_sent = True
            os.kill(os.getpid(), signal.SIGINT)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.first_sent and not self.second_sent:
            self.second_sent = True
            os.kill(os.getpid(), signal.SIGINT)
