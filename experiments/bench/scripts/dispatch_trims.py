"""Run D3: what each dispatch trim of src/training/dispatch.py saves, in process CPU time per step.

The model is cut down to one Linear layer on a batch of 8, so a step's compute is ~0.4 ms and
Lightning's per-step Python work is most of it; CPU time (not wall time) so that a loaded machine
still gives stable figures. Variants, each a full ``trainer.fit`` with the default callbacks and
loggers (embedding plots off), rotated through ROUNDS rounds:

  bare            forward, loss, zero_grad, backward, AdamW step, scheduler step by hand
  none            Lightning as it comes: all hooks dispatched, nn.Module.__setattr__, PassThroughProfiler
  +skip           skip_noop_batch_hooks on the trainer's callbacks and the module
  +skip+fx        and FastFxName (what MarginClassifier has)
  +skip+fx+quiet  and QuietProfiler: what src.train runs

  PYTHONPATH=. python experiments/bench/scripts/dispatch_trims.py [STEPS=600] [ROUNDS=4]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.profilers import PassThroughProfiler

from src.bench.common import compose_config, quiet_lightning
from src.training.dispatch import QuietProfiler, skip_noop_batch_hooks
from src.training.model import MarginClassifier
from src.training.pipeline import build
from src.utils.hardware import cpu_model

VARIANTS = ("bare", "none", "+skip", "+skip+fx", "+skip+fx+quiet")


class PlainSetattr(MarginClassifier):
    """MarginClassifier without FastFxName: every attribute through nn.Module.__setattr__."""

    __setattr__ = torch.nn.Module.__setattr__


class CPUClock(pl.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args: object) -> None:
        self.stamps.append(time.process_time())


def median_step_us(stamps: list[float], skip: int = 50) -> float:
    return statistics.median(b - a for a, b in zip(stamps[skip:], stamps[skip + 1:], strict=False)) * 1e6


def tiny_model(cfg):  # noqa: ANN001, ANN201
    pl.seed_everything(0, verbose=False)
    _, model = build(cfg)
    model.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, cfg.model.embedding_dim))
    return model


def bare(cfg, datamodule, steps: int) -> float:  # noqa: ANN001
    model = tiny_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps + 1)
    datamodule.trainer = None
    stamps = []
    for i, (images, labels) in enumerate(datamodule.train_dataloader()):
        if i >= steps:
            break
        stamps.append(time.process_time())
        loss = model.head(model.backbone(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return median_step_us(stamps)


def framework(cfg, datamodule, steps: int, variant: str) -> float:  # noqa: ANN001
    model = tiny_model(cfg)
    if "fx" not in variant:
        model.__class__ = PlainSetattr
    clock = CPUClock()
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [clock]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, enable_progress_bar=False, enable_model_summary=False,
        max_epochs=1, limit_train_batches=steps, limit_val_batches=0, num_sanity_val_steps=0,
        profiler=QuietProfiler() if "quiet" in variant else PassThroughProfiler(),
    )
    if "skip" in variant:
        skip_noop_batch_hooks(trainer.callbacks, model)
    trainer.fit(model, datamodule=datamodule)
    return median_step_us(clock.stamps)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    quiet_lightning()
    cfg = compose_config(["backbone=small2d", "data.batch_size=8", "threads=1", "trainer.precision=32-true",
                          "callbacks.embeddings=null"], Path(tempfile.mkdtemp()))
    datamodule, _ = build(cfg)
    datamodule.setup("fit")
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]:
            us = bare(cfg, datamodule, steps) if variant == "bare" else framework(cfg, datamodule, steps, variant)
            results[variant].append(us)
    print(f"# {cpu_model()}, torch {torch.__version__}, pytorch_lightning {pl.__version__}; "
          f"{steps} steps per fit, median CPU µs per step (first 50 steps skipped), {rounds} rounds")
    base = statistics.median(results["none"])
    for variant in VARIANTS:
        med = statistics.median(results[variant])
        runs = " ".join(f"{x:.0f}" for x in results[variant])
        print(f"{variant:16s} {med:7.0f} µs  (rounds: {runs})  vs none: {med - base:+.0f} µs")


if __name__ == "__main__":
    main()
