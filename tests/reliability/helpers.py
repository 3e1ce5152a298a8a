"""Shared pieces of the reliability tests: subprocess commands and test-only callbacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from tests.conftest import REPO, TINY

# Without TensorBoard (figures, events) and the post-test analyses a tiny job costs half as much.
LEAN = ["analysis.geometry=false", "logger.tensorboard=null", "callbacks.learning_rate=null"]
# One epoch of two batches: a job costs about a second once the process is warm.
QUICK = [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "src.train", *overrides]


def run_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (CI runners, nohup) inherits
    # SIGINT as ignored, and Python then never raises KeyboardInterrupt; a terminal user's Ctrl-C
    # reaches a process whose SIGINT is at its default, so restore that in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(cmd: list[str], cwd: Path | str = REPO, own_group: bool = False) -> subprocess.Popen:
    """``own_group``: the command leads its own process group (a new session), as a terminal's job does,
    so that ``os.killpg`` reaches it and all its children at once, as a terminal's Ctrl-C does."""
    return subprocess.Popen(
        cmd, cwd=cwd, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint, start_new_session=own_group,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            tail = proc.stderr.read()[-3000:] if proc.stderr else ""
            raise AssertionError(f"process ended ({proc.returncode}) before {path} appeared: {tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


class PauseAfterStep(pl.Callback):
    """Test-only: from training step ``step`` on (up to ``last_step``), write ``marker`` and sleep
    ``seconds`` after each step, so a test can send a signal while the run is known to be mid-epoch."""

    def __init__(self, step: int, marker: str, seconds: float = 0.5, last_step: int | None = None) -> None:
        self.step, self.marker, self.seconds = int(step), Path(marker), float(seconds)
        self.last_step = last_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step and (self.last_step is None or trainer.global_step <= self.last_step):
            self.marker.write_text(str(trainer.global_step))
            time.sleep(self.seconds)


class PoisonWeight(pl.Callback):
    """Test-only: sets one weight of the head to NaN after training step ``step``."""

    def __init__(self, step: int = 1) -> None:
        self.step = int(step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.head.weight[0, 0] = float("nan")


# Test-only fault injection (tests/reliability/test_disk_errors.py): while "on", every binary write
# through src.utils.io fails with ENOSPC, as on a disk with a few kilobytes left.
FULL = {"on": False, "filled": False}


class DiskFillsAtEpoch(pl.Callback):
    """Test-only: the disk "fills" once, when epoch ``epoch`` starts (that epoch's checkpoints fail);
    the test frees it before resuming with the same config."""

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.current_epoch >= self.epoch and not FULL["filled"]:
            FULL["on"] = FULL["filled"] = True


class StepLog(pl.Callback):
    """Test-only: appends each finished training step's global step to ``path`` (one per line), so a
    test can kill a run at a chosen point of its progress and see where a resumed run started."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        with self.path.open("a") as f:
            f.write(f"{trainer.global_step}\n")
