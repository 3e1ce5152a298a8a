"""DDP whose worker processes are started by ``multiprocessing`` (``conf/trainer/ddp_cpu.yaml``).

Why not Lightning's plain ``ddp``: without an external launcher it starts ranks 1..N-1 by running
the command line again (``python -m src.train <overrides>``). Under Hydra that re-runs a whole
multirun (``-m``) in every worker, and every worker writes the run record. These workers run
only ``trainer.fit`` / ``trainer.test``; the Hydra job, its folder and its record stay in the
main process.

Lightning's multiprocessing launcher sends back only rank 0's last weights, the trainer state, the
best checkpoint path and ``callback_metrics``. ``MultiprocessDDPStrategy`` also sends back what the
run record is built from: every callback's state (the best score of ``ModelCheckpoint``, the epoch
history), the module's ``results`` (``StageResults``: the synchronised confusion matrices, the
test predictions; its fields marked rank-local stay in the workers), the fit loop's
progress (epochs, global step) and the data module's state, and it readies the data module's test
split in the main process for the post-test analyses. Under spawn it also gives every worker its
own copy of the torchmetrics states (see ``_unshare_metric_states``). An error in a worker is
re-raised in the main process as its own type when it is one of ours (``src.errors.USER_ERRORS``:
``NonFiniteError``, ``CheckpointError``, ``ConfigError``, ``DatasetError`` ...), with its one-line message.

Stopping (``_StopTogether``). SIGTERM or Ctrl-C reaches the main process (and, from a terminal or
a cluster manager, often every worker too). The main process and the workers only set a shared
flag; after every training batch the ranks all-reduce it, so every rank stops after the *same*
batch, saves ``last.ckpt`` together (the interrupt checkpoint is a collective save) and returns;
the main process then records ``interrupted`` and exits 143 (SIGTERM) or 130 (Ctrl-C). A second
Ctrl-C kills the workers at once (the previous ``last.ckpt`` stays, whole). Workers die with the
main process (``PR_SET_PDEATHSIG`` on Linux), so a killed run never leaves orphans writing
checkpoints. Lightning's own SIGTERM handler is not used in the workers: it runs a collective
broadcast inside the signal handler, which pairs with whatever collective the other rank is in.

For GPUs on one or more machines use ``trainer=ddp`` under ``torchrun`` or SLURM (one process per
GPU started from outside; see docs/reliability.md). Under SLURM with several tasks per job
(``hydra/launcher=slurm hydra.launcher.tasks_per_node=N``) this strategy starts nothing either:
the N tasks are the ranks (Lightning's SLURM environment), as for ``trainer=ddp``.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import re
import signal
import sys
import threading
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import apply_to_collection
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor
from torch.nn import Module

from src.config.checks import fail

log = logging.getLogger(__name__)
KEY = "marginloss_state_bytes"
INTERRUPTED = "marginloss_interrupted"  # what rank 0 returns when the ranks stopped on a signal


def _reraised(err: BaseException) -> BaseException:
    """The worker's own error type and message when it is one a user acts on, else ``err``."""
    from src.errors import USER_ERRORS

    known = {cls.__name__: cls for cls in USER_ERRORS}
    for line in reversed(str(err).splitlines()):
        match = re.match(r"^(?:[\w.]+\.)?(\w+): (.+)$", line.strip())
        if match and match.group(1) in known:
            return known[match.group(1)](match.group(2))
        # A full disk or read-only folder in a worker: the same one-line OSError as in a single process.
        match = re.match(r"^(?:[\w.]+\.)?\w*Error: \[Errno (\d+)\] (.+?)(?:: '(.+)')?$", line.strip())
        if match:
            return OSError(int(match.group(1)), match.group(2), *(match.groups()[2:] if match.group(3) else ()))
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


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends this worker SIGKILL when the main process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the main process died before prctl took effect
            os._exit(1)


class _StopTogether(pl.Callback):
    """In every worker: after each training batch the ranks agree (all-reduce, max) whether a stop
    was asked for; if so every rank sets Lightning's stop flag, and all raise ``SIGTERMException``
    at the end of the same batch."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        flag = torch.tensor([1 if self.stop.is_set() else 0], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item():
            trainer._signal_connector.received_sigterm = True

    def state_dict(self) -> dict[str, Any]:
        return {}


class _ResultsLauncher(_MultiProcessingLauncher):
    def launch(self, function: Any, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        from torch.multiprocessing.spawn import ProcessRaisedException

        # The main process never attaches the data module (that happens in the workers).
        self._datamodule = _find((args, kwargs), pl.LightningDataModule)
        if getattr(self, "_stop", None) is None:  # shared with the workers (inherited at their start)
            self._stop = torch.multiprocessing.get_context(self._start_method).Event()
            self._stop_reason: str | None = None
            self._main_pid = os.getpid()
        previous = self._install_main_handlers()
        try:
            return super().launch(function, *args, trainer=trainer, **kwargs)
        except ProcessRaisedException as err:
            clean = _reraised(err)
            if clean is err:
                raise
            raise clean from err
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # --- the main process --------------------------------------------------------------------
    def _install_main_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if signum == signal.SIGINT and handler in (signal.SIG_IGN, None):
                continue  # a background job that ignores Ctrl-C keeps ignoring it
            previous[signum] = handler
            signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: Any) -> None:
        from src.callbacks.signals import _ctrl_c

        ctrl_c = signum == signal.SIGINT
        if ctrl_c and self._stop.is_set():  # second Ctrl-C: stop now; the previous last.ckpt stays
            self.kill(signal.SIGKILL)
            raise KeyboardInterrupt
        if self._stop_reason is None:
            self._stop_reason = "KeyboardInterrupt" if ctrl_c else "SIGTERM"
            _ctrl_c["pending"] = ctrl_c  # how src.training.pipeline reports the stop (130 or 143)
        self._stop.set()
        log.warning("%s: every worker stops after the same batch and saves last.ckpt%s",
                    "Ctrl-C" if ctrl_c else "SIGTERM", " (Ctrl-C again to stop at once)" if ctrl_c else "")

    # --- the workers -------------------------------------------------------------------------
    def _wrapping_function(self, process_idx: int, trainer: Any, function: Any, args: Any, kwargs: Any,
                           return_queue: Any, *rest: Any) -> None:  # fmt: skip
        from pytorch_lightning.trainer.call import _interrupt

        _die_with_parent(self._main_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the main process too
        if trainer is not None:
            stop = self._stop
            trainer._signal_connector.register_signal_handlers = lambda: signal.signal(
                signal.SIGTERM, lambda signum, frame: stop.set()
            )  # instead of Lightning's handler (see the module docstring)
            trainer.callbacks.append(_StopTogether(stop))
        if self._start_method in ("spawn", "forkserver"):  # arguments were pickled into shared memory
            apply_to_collection((args, kwargs), dtype=Module, function=_unshare_metric_states)
        try:
            super()._wrapping_function(process_idx, trainer, function, args, kwargs, return_queue, *rest)
        except SIGTERMException as err:  # every rank, after the same batch
            _interrupt(trainer, err)  # on_exception: the interrupt checkpoint, saved by the ranks together
            if process_idx == 0:
                return_queue.put(INTERRUPTED)

    def _recover_results_in_main_process(self, worker_output: Any, trainer: pl.Trainer) -> None:
        if isinstance(worker_output, str) and worker_output == INTERRUPTED:
            raise SIGTERMException  # src.training.pipeline records "interrupted" (SIGTERM or Ctrl-C, see _on_signal)
        super()._recover_results_in_main_process(worker_output, trainer)

    def get_extra_results(self, trainer: pl.Trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        payload = {
            "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks},
            "results": trainer.lightning_module.results.shipped(),  # StageResults, src/training/model.py
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
        trainer.lightning_module.results.receive(payload["results"])
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
            fail("start_method", start_method, "use auto, spawn, fork or forkserver")
        self._auto_start = start_method == "auto"
        super().__init__(start_method="spawn" if self._auto_start else start_method, **kwargs)

    def _configure_launcher(self) -> None:
        from src.training.ranks import launched_world

        if launched_world()[1] > 1:
            # SLURM (hydra/launcher=slurm tasks_per_node=N) or torchrun started one process per rank:
            # nothing to start here; every rank runs the job, only rank 0 writes the run folder.
            self._launcher = None
            return
        if self._auto_start:  # the accelerator is known by now
            cpu = self.accelerator is None or isinstance(self.accelerator, CPUAccelerator)
            self._start_method = "fork" if cpu and sys.platform.startswith("linux") else "spawn"
        self._launcher = _ResultsLauncher(self, start_method=self._start_method)
