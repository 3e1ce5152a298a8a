"""Random-number generator state travels with checkpoints, so a resumed run draws the same dropout
masks as an uninterrupted one (Lightning saves model, optimiser, schedule and loops, not RNGs).

Saved: the torch CPU generator and every CUDA generator, as tensors (``weights_only`` loading
accepts them). Restored when training starts, after Lightning has loaded everything else. The
data order does not need it: ``InMemoryBatches`` draws each epoch's order from (seed, epoch).
Under DDP the checkpoint holds rank 0's state, which every rank then continues from.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class RNGStateCheckpoint(pl.Callback):
    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if "torch" in state:
            torch.set_rng_state(state["torch"].cpu())
        cuda = state.get("cuda")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
