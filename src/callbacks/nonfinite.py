"""Stops a run whose loss or weights turn NaN / inf, with a message that says where and when.

Every step's training loss is copied, on its own device and without a host sync, into a buffer of
``check_loss_every_n_steps`` slots (one small copy per step rather than a dozen small ops); the host
keeps each slot's epoch, batch and step. The host checks the buffer every
``check_loss_every_n_steps`` steps, at the end of every epoch, before every checkpoint and whenever
the buffer is full (one boolean reduction; under DDP every rank takes the same decision, so no rank
is left waiting in a collective). So on a GPU the check costs no per-step sync, and the message
still names the exact step where the loss first went bad, even when the run stops a few steps
later. Parameters
and floating-point buffers are checked every ``check_weights_every_n_steps`` optimizer steps, at
the end of every training epoch and before every checkpoint is written, so a diverged model is
never saved as ``last.ckpt`` and picked up by ``resume=true``.

The raised ``NonFiniteError`` ends ``trainer.fit``; ``src.training.pipeline.run`` marks the run record
``failed`` with the message, and in a multirun the other jobs go on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from src.config.checks import check_int
from src.errors import NonFiniteError

HINT = "lower optimizer.lr, set trainer.gradient_clip_val, or use trainer.precision=32-true"


def _describe(t: torch.Tensor) -> str:
    t = t.detach()
    kinds = [name for name, bad in (("nan", torch.isnan(t).any()), ("inf", torch.isinf(t).any())) if bool(bad)]
    return "/".join(kinds) or "non-finite"


class NonFiniteGuard(pl.Callback):
    def __init__(self, check_loss_every_n_steps: int = 1, check_weights_every_n_steps: int = 50) -> None:
        # 0 switches a check off.
        self.loss_every = check_int("callbacks.nonfinite.check_loss_every_n_steps", check_loss_every_n_steps, 0,
                                    whole_floats=True)
        self.weights_every = check_int("callbacks.nonfinite.check_weights_every_n_steps", check_weights_every_n_steps,
                                       0, whole_floats=True)
        # The losses noted since the last read, on the loss's device, and where each was noted.
        self._losses: torch.Tensor | None = None
        self._noted: list[tuple[int, int, int]] = []

    # --- the checks ------------------------------------------------------------------------
    @staticmethod
    def _where(trainer: pl.Trainer) -> str:
        return f"epoch {trainer.current_epoch}, global step {trainer.global_step}"

    def note_loss(self, trainer: pl.Trainer, loss: torch.Tensor | None, batch_idx: int) -> None:
        """Keep the loss on its device (no host sync) for the next read."""
        if loss is None:
            return
        value = loss.detach()
        value = value.reshape(()) if value.numel() == 1 else value.float().sum()  # nan or +-inf if any is
        if self._losses is None or self._losses.device != value.device:
            self._losses = torch.zeros(max(1, self.loss_every), device=value.device)
        elif len(self._noted) == len(self._losses):
            self.read_loss(trainer)
        self._losses[len(self._noted)].copy_(value)
        self._noted.append((int(trainer.current_epoch), int(batch_idx), int(trainer.global_step)))

    def read_loss(self, trainer: pl.Trainer) -> None:
        """The host sync: raise if any rank has noted a non-finite loss since the last read."""
        losses = self._losses
        # No loss noted yet, or loss checks off: every rank is in the same state, so none skips a
        # collective alone.
        if losses is None:
            return
        finite = torch.isfinite(losses[: len(self._noted)])
        local_bad = bool(len(self._noted) > 0 and not bool(finite.all()))
        if trainer.strategy.reduce_boolean_decision(local_bad, all=False):
            if local_bad:
                first = int((~finite).nonzero()[0])
                epoch, batch, step = self._noted[first]
                kind = "nan" if bool(torch.isnan(losses[first])) else "inf"
                raise NonFiniteError(
                    f"training diverged: the training loss is {kind} at epoch {epoch}, batch {batch} "
                    f"(global step {step}); {HINT}"
                )
            raise NonFiniteError(
                f"training diverged: the training loss is non-finite on another process by "
                f"{self._where(trainer)}; {HINT}"
            )
        self._noted.clear()

    def check_weights(self, trainer: pl.Trainer, module: pl.LightningModule, when: str) -> None:
        """Weights are identical on every DDP rank, so each rank decides alone (no collective)."""
        tensors = [(n, p) for n, p in module.named_parameters()]
        tensors += [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        if not tensors:
            return
        with torch.no_grad():
            finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
            if bool(finite.all()):
                return
            bad = [(n, t) for (n, t), ok in zip(tensors, finite.tolist(), strict=True) if not ok]
        name, tensor = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise NonFiniteError(
            f"training diverged: weight {name} holds {_describe(tensor)} values{more} {when} at "
            f"{self._where(trainer)}; {HINT}"
        )

    # --- hooks -----------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.loss_every:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            self.note_loss(trainer, loss if isinstance(loss, torch.Tensor) else None, batch_idx)
            if batch_idx % self.loss_every == 0:
                self.read_loss(trainer)
        if self.weights_every and trainer.global_step % self.weights_every == 0:
            self.check_weights(trainer, pl_module, "after the optimizer step")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.read_loss(trainer)
        self.check_weights(trainer, pl_module, "at the end of the epoch")

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.read_loss(trainer)
        self.check_weights(trainer, pl_module, "so the checkpoint was not written")
