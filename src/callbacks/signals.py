"""SIGTERM and Ctrl-C stop a run between two whole training steps and save ``last.ckpt`` there.

Lightning 2.x stops cleanly on SIGTERM: its handler sets a flag and the loops raise
``SIGTERMException`` only after a batch has completed (optimiser, schedules, loop counters all
stepped). Ctrl-C, left alone, raises ``KeyboardInterrupt`` wherever the main thread is: between the
optimiser step and the loop's step counter, say, so a checkpoint saved then holds half a step.
``CheckpointOnInterrupt`` therefore turns the first Ctrl-C during ``fit`` into the same flag
(``trainer.received_sigterm``), remembers that it was Ctrl-C, and saves ``last.ckpt`` when the loop
stops at the next batch boundary. A second Ctrl-C interrupts at once and saves nothing (the
previous ``last.ckpt`` stays the newest whole state).

The checkpoint is written under ModelCheckpoint's own ``last.ckpt`` name and ``last_model_path``
is set *before* saving, so the state inside the file already names it: a resumed run overwrites
``last.ckpt`` instead of starting ``last-v1.ckpt`` beside it.

A checkpoint written mid-epoch resumes mid-epoch: the epoch's remaining batches are taken from the
start of that epoch's order (the batches are not a stateful loader), so a resumed run matches an
uninterrupted one exactly only when it resumes from an end-of-epoch ``last.ckpt`` (e.g. after a
SIGKILL). ``interruption`` tells ``src.training.pipeline`` how a run ended: record status ``interrupted``
and exit code 130 (Ctrl-C) or 143 (SIGTERM).

A cluster's own stop (SLURM's time-limit warning, which submitit turns into a requeue:
``src.cluster.slurm``) goes the same way through ``request_stop(reason)``: the running fit stops
after the current batch and saves ``last.ckpt``, or the next fit stops after its first batch; the
record says ``interrupted`` with that reason.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from src.runs.folder import RunFolder

log = logging.getLogger(__name__)

EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, as shells report them
# Set while a Ctrl-C is being turned into a graceful stop: the stop Lightning raises is then
# reported as Ctrl-C (130), not as SIGTERM.
_ctrl_c = {"pending": False}
# A stop asked for by the cluster (``request_stop``), and the trainer of the fit in progress.
_cluster_stop: dict[str, Any] = {"reason": None}
_active: dict[str, Any] = {"trainer": None}
# True while a fit's validation runs: a stop asked for then waits for its end (``deferred``).
_validating: dict[str, Any] = {"on": False}


def _startup_sigterm() -> SIGTERMException:
    """The stop ``StartupStop`` raises: marked, so that ``CheckpointOnInterrupt`` saves nothing for it."""
    err = SIGTERMException(EXIT_SIGTERM)
    err.at_startup = True  # type: ignore[attr-defined]
    return err


class StartupStop:
    """SIGTERM while a segment starts (its record opened, the data, model and callbacks being built,
    the checkpoint being read): before this, the default action killed the process and the record
    said ``running``. Installed by ``src.training.pipeline`` before the record is opened: a SIGTERM
    is only noted until ``arm()`` (inside the code that records how the segment ends), and from then
    on raises ``SIGTERMException`` (exit 143), so the record says ``interrupted``; no training step has
    run, so ``CheckpointOnInterrupt`` writes no checkpoint for it. Once Lightning's own handler is
    installed it calls this one after its own: this one then leaves the stop to it (after the
    current batch, with a checkpoint). A forked DDP worker inherits the handler and gets the default
    action, as before. ``close()`` (after the fit) puts the previous handler back; a process that
    ignores SIGTERM keeps ignoring it."""

    def __init__(self) -> None:
        self.pid, self.armed, self.pending = os.getpid(), False, False
        self.previous: Any = signal.SIG_DFL
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.getsignal(signal.SIGTERM)
            self.installed = self.previous is not signal.SIG_IGN
        if self.installed:
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:  # a forked worker: the default action, as without this handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if signal.getsignal(signal.SIGTERM) != self._on_sigterm:
            return  # called by the handler that replaced it (Lightning's, during the fit): it stops the run
        if not self.armed:
            self.pending = True
            return
        self.armed = False  # once: the recording of the stop must not be interrupted by a second one
        raise _startup_sigterm()

    def arm(self) -> None:
        self.armed = self.installed
        if self.pending:
            self.pending, self.armed = False, False
            raise _startup_sigterm()

    def close(self) -> None:
        self.armed = False
        if self.installed and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
        self.installed = False


def request_stop(reason: str) -> None:
    """Stop the fit in progress after its current batch (saving ``last.ckpt``), or the next fit
    after its first batch; the record says ``interrupted`` with ``reason``. Signal-handler safe."""
    _cluster_stop["reason"] = reason
    trainer = _active["trainer"]
    if _validating["on"]:
        _validating["deferred"] = True
    elif trainer is not None:
        trainer._signal_connector.received_sigterm = True


def interruption(err: BaseException) -> tuple[str, int] | None:
    """(reason, exit code) when ``err`` is how Lightning ends a run on SIGTERM or Ctrl-C, else None."""
    if isinstance(err, SIGTERMException):
        if _ctrl_c["pending"]:
            return "KeyboardInterrupt", EXIT_SIGINT
        if _cluster_stop["reason"]:
            return str(_cluster_stop["reason"]), EXIT_SIGTERM
        return "SIGTERM", EXIT_SIGTERM
    if isinstance(err, KeyboardInterrupt):
        return "KeyboardInterrupt", EXIT_SIGINT
    if isinstance(err, SystemExit) and err.code == 1:  # Lightning's sys.exit(1) after a KeyboardInterrupt
        return "KeyboardInterrupt", EXIT_SIGINT
    return None


def latest_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The ModelCheckpoint that keeps ``last.ckpt`` (conf/callbacks: latest_checkpoint), else the
    first one (its ``save_last`` file)."""
    checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    latest = [c for c in checkpoints if c.monitor is None and c.filename == c.CHECKPOINT_NAME_LAST]
    return (latest or checkpoints or [None])[0]


class CheckpointOnInterrupt(pl.Callback):
    def __init__(self) -> None:
        self.saved_path: str | None = None
        self._previous_handler: Any = None
        self._installed = False
        self._forced = False
        self._deferred = False
        self._sigterm_handler: Any = None
        self._saving = False

    # --- Ctrl-C as a graceful stop during fit ----------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _ctrl_c["pending"] = False
        self._forced = False
        _active["trainer"] = trainer
        # Signal handlers can only be set from the main thread; under DDP each rank gets its own
        # SIGINT from the terminal at different points, so ranks keep Python's default there.
        if threading.current_thread() is not threading.main_thread() or trainer.world_size > 1:
            return
        self._previous_handler = signal.getsignal(signal.SIGINT)
        if self._previous_handler in (signal.SIG_IGN, None):
            return  # a background job that ignores Ctrl-C keeps ignoring it
        signal.signal(signal.SIGINT, self._make_handler(trainer))
        self._installed = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning has (re)set its stop flag: a stop asked for before this fit ends it after one batch.
        if _cluster_stop["reason"]:
            trainer._signal_connector.received_sigterm = True

    def _make_handler(self, trainer: pl.Trainer) -> Any:
        def on_sigint(signum: int, frame: Any) -> None:
            # A second Ctrl-C (or any while the stop's checkpoint is written): stop now, saving
            # nothing; the write is atomic, so the previous last.ckpt stays whole.
            if _ctrl_c["pending"] or self._saving:
                self._forced = True
                raise KeyboardInterrupt
            _ctrl_c["pending"] = True
            if _validating["on"]:
                _validating["deferred"] = True  # after the validation (and its checkpoints)
            else:
                trainer._signal_connector.received_sigterm = True  # the loops stop at the next batch boundary
            log.warning("Ctrl-C: stopping after the current batch (press Ctrl-C again to stop at once)")

        return on_sigint

    def _restore_handler(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._installed = False

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _active["trainer"] = None
        self._restore_handler()
        if _ctrl_c["pending"]:  # Ctrl-C came too late for the loops to see it: stop before the test
            raise KeyboardInterrupt

    # --- a stop asked for during validation waits for its end ------------------------------
    # Lightning would stop the validation loop part-way and save it there; the resumed run then
    # skips the rest, so that epoch gets no val/acc and never competes for "best". Deferred to the
    # validation's end, the stop lands at the epoch end, whose last.ckpt resumes exactly.
    # While it runs, SIGTERM (and a first Ctrl-C) only note the request; a request made before it
    # (the cluster's) is taken back at every batch and given again at the end.
    def _defer_stop(self, trainer: pl.Trainer) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and trainer.received_sigterm:
            trainer._signal_connector.received_sigterm = False
            self._deferred = True

    def _note_sigterm(self, signum: int, frame: Any) -> None:
        log.info("SIGTERM during validation: stopping once this validation and its checkpoints are done")
        self._deferred = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        _validating["on"] = True
        self._defer_stop(trainer)
        if threading.current_thread() is threading.main_thread() and trainer.world_size == 1:
            self._sigterm_handler = signal.signal(signal.SIGTERM, self._note_sigterm)

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._defer_stop(trainer)

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._defer_stop(trainer)

    def _end_validation(self) -> bool:
        _validating["on"] = False
        if self._sigterm_handler is not None:
            signal.signal(signal.SIGTERM, self._sigterm_handler)
            self._sigterm_handler = None
        deferred, self._deferred = self._deferred or _validating.pop("deferred", False), False
        return deferred

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._end_validation():
            trainer._signal_connector.received_sigterm = True  # the fit loop stops after this epoch's checkpoints

    # --- the checkpoint ----------------------------------------------------------------------
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        _active["trainer"] = None
        self._end_validation()
        # Ctrl-C keeps this callback's handler until the checkpoint below is written, so that a
        # second one stops at once instead of being Python's KeyboardInterrupt mid-save.
        self._saving = True
        try:
            self._save_on_interrupt(trainer, exception)
        finally:
            self._saving = False
            self._restore_handler()

    def _save_on_interrupt(self, trainer: pl.Trainer, exception: BaseException) -> None:
        sigterm = isinstance(exception, SIGTERMException)
        if getattr(exception, "at_startup", False):
            return  # the fit had not begun to train: the checkpoint it resumed from is the newest state
        if not (sigterm or isinstance(exception, KeyboardInterrupt)) or self._forced:
            return
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.global_step == 0:
            return
        if trainer.validating:  # a validation cut short must not be saved: the epoch is redone on resume
            log.warning("stopped during validation: keeping the previous last.ckpt (this epoch is redone on resume)")
            return
        if not sigterm and trainer.world_size > 1:
            # Ctrl-C reaches the ranks at different points: a collective save could wait forever.
            log.warning("Ctrl-C under DDP: no interrupt checkpoint (send SIGTERM to stop with one)")
            return
        if not sigterm:
            # A raw KeyboardInterrupt (outside the loops' batch boundaries) can land mid-step.
            log.warning("Ctrl-C outside a batch boundary: keeping the previous last.ckpt")
            return
        checkpoint = latest_checkpoint(trainer)
        if checkpoint is None or not checkpoint.dirpath:
            return
        if getattr(checkpoint, "_last_global_step_saved", -1) == trainer.global_step:
            return  # the current state is already in last.ckpt
        path = os.path.join(checkpoint.dirpath, checkpoint.CHECKPOINT_NAME_LAST + checkpoint.FILE_EXTENSION)
        # Before saving: the callback's state inside the file must already name this file.
        if checkpoint.monitor is None:
            checkpoint.best_model_path = path
        else:
            checkpoint.last_model_path = path
        trainer.save_checkpoint(path)
        checkpoint._last_global_step_saved = trainer.global_step
        self.saved_path = path
        reason = "Ctrl-C" if _ctrl_c["pending"] else (_cluster_stop["reason"] or "SIGTERM")
        folder = RunFolder.of_checkpoint(path)
        log.warning(f"{reason}: saved {path} at global step {trainer.global_step}; continue with "
                    f"{folder.resume_command()}")

    def state_dict(self) -> dict[str, Any]:
        return {}
