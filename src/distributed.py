"""DDP whose worker processes are started by ``multiprocessing`` (``conf/trainer/ddp_cpu.yaml``).

Why not Lightning's plain ``ddp``: without an external launcher it starts ranks 1..N-1 by running
the command line again (``python -m src.train <overrides>``). Under Hydra that re-runs a whole
multirun (``-m``) in every worker, and every worker writes the run record. These workers run
only ``trainer.fit`` / ``trainer.test``; the Hydra job, its folder and its record stay in the
main process.

Lightning's multiprocessing launcher sends back only rank 0's last weights, the trainer state, the
best checkpoint path and ``callback_metrics``. ``MultiprocessDDPStrategy`` also sends back what the
run record is built from: every callback's state (the best score of ``ModelCheckpoint``, the epoch
history), the module's ``last_*`` results (the synchronised confusion matrices), the fit loop's
progress (epochs, global step) and the data module's state, and it readies the data module's test
split in the main process for the post-test analyses. Under spawn it also gives every worker its
own copy of the torchmetrics states (see ``_unshare_metric_states``). An error in a worker is
re-raised in the main process as its own type when it is one of ours (``NonFiniteError``,
``CheckpointError``, ``ConfigError``), with its one-line message.

For GPUs on one or more machines use ``trainer=ddp`` under ``torchrun`` or SLURM (one process per
GPU started from outside; see docs/reliability.md).
"""

from __future__ import annotations

import io
import re
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import apply_to_collection
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor
from torch.nn import Module

KEY = "marginloss_state_bytes"
MODULE_ATTRIBUTES = ("test_predictions",)  # plus every attribute whose name starts with "last_"


def _reraised(err: BaseException) -> BaseException:
    """The worker's own error type and message when it is one a user acts on, else ``err``."""
    from src.callbacks.nonfinite import NonFiniteError
    from src.checkpointing import CheckpointError
    from src.errors import ConfigError

    known = {cls.__name__: cls for cls in (NonFiniteError, CheckpointError, ConfigError)}
    for line in reversed(str(err).splitlines()):
        match = re.match(r"^(?:[\w.]+\.)?(\w+): (.+)$", line.strip())
        if match and match.group(1) in known:
            return known[match.group(1)](match.group(2))
    return err


def _unshare_metric_states(module: Module) -> Module:
    """Spawned workers receive every tensor in shared memory. Lightning copies parameters and
    buffers, but torchmetrics states are plain attributes: left shared, every rank would add its
    batches into the same tensors and the synchronised confusion matrix would count each image
    world-size times. Each worker gets its own copies."""
    from torchmetrics import Metric

    for metric in module.modules():
        if isinstance(metric, Metric):
            for name in metric._defaults:
                value = getattr(metric, name)
                if isinstance(value, Tensor):
                    setattr(metric, name, value.clone())
                elif isinstance(value, list):
                    setattr(metric, name, [v.clone() if isinstance(v, Tensor) else v for v in value])
    return module


def _find(collection: Any, kind: type) -> Any:
    found: list[Any] = []
    apply_to_collection(collection, dtype=kind, function=lambda x: found.append(x) or x)
    return found[0] if found else None


class _ResultsLauncher(_MultiProcessingLauncher):
    def launch(self, function: Any, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        from torch.multiprocessing.spawn import ProcessRaisedException

        # The main process never attaches the data module (that happens in the workers).
        self._datamodule = _find((args, kwargs), pl.LightningDataModule)
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        except ProcessRaisedException as err:
            clean = _reraised(err)
            if clean is err:
                raise
            raise clean from err

    def _wrapping_function(self, process_idx: int, trainer: Any, function: Any, args: Any, kwargs: Any,
                           *rest: Any) -> None:  # fmt: skip
        if self._start_method in ("spawn", "forkserver"):  # arguments were pickled into shared memory
            apply_to_collection((args, kwargs), dtype=Module, function=_unshare_metric_states)
        super()._wrapping_function(process_idx, trainer, function, args, kwargs, *rest)

    def get_extra_results(self, trainer: pl.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        module = trainer.lightning_module
        names = [n for n in vars(module) if n.startswith("last_")]
        names += [n for n in MODULE_ATTRIBUTES if hasattr(module, n)]
        payload = {
            "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks},
            "module": {name: getattr(module, name) for name in names},
            "datamodule": trainer.datamodule.state_dict() if trainer.datamodule is not None else None,
            "fit_loop": trainer.fit_loop.state_dict() if trainer.state.fn == TrainerFn.FITTING else None,
        }
        buffer = io.BytesIO()
        torch.save(apply_to_collection(payload, Tensor, lambda t: t.detach().cpu()), buffer)
        extra[KEY] = buffer.getvalue()
        return extra

    def update_main_process_results(self, trainer: pl.Trainer, extra: dict[str, Any]) -> None:
        super().update_main_process_results(trainer, extra)
        if KEY not in extra:
            return
        payload = torch.load(io.BytesIO(extra[KEY]), weights_only=True)
        states = payload["callbacks"]
        for callback in trainer.callbacks:
            if states.get(callback.state_key):
                callback.load_state_dict(states[callback.state_key])
        for name, value in payload["module"].items():
            setattr(trainer.lightning_module, name, value)
        if payload["fit_loop"] is not None:  # epoch and global step of the run, for the record
            trainer.fit_loop.load_state_dict(payload["fit_loop"])
        datamodule = getattr(self, "_datamodule", None)
        if datamodule is not None and payload["datamodule"]:
            datamodule.load_state_dict(payload["datamodule"])
            if getattr(datamodule, "_test", "absent") is None:  # analyses after the test run here
                datamodule.setup("test")


class MultiprocessDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose workers are started by multiprocessing. ``start_method="auto"``: fork
    on Linux CPUs (no re-import in the workers: a tiny run takes seconds), spawn for GPUs (CUDA
    cannot be forked) and on other systems."""

    def __init__(self, start_method: str = "auto", **kwargs: Any) -> None:
        if start_method not in ("auto", "spawn", "fork", "forkserver"):
            raise ValueError(f"start_method={start_method!r} is invalid: use auto, spawn, fork or forkserver")
        self._auto_start = start_method == "auto"
        super().__init__(start_method="spawn" if self._auto_start else start_method, **kwargs)

    def _configure_launcher(self) -> None:
        if self._auto_start:  # the accelerator is known by now
            cpu = self.accelerator is None or isinstance(self.accelerator, CPUAccelerator)
            self._start_method = "fork" if cpu and sys.platform.startswith("linux") else "spawn"
        self._launcher = _ResultsLauncher(self, start_method=self._start_method)
