"""The overhead benchmark's harness: per-step timing of both sides under the same machine load
(``Steps``, ``StepClock``), the runs themselves (``Bench``), and their statistics and tables
(``summarise``, ``decompose``, ``print_table``, ``profile``). The method is described in
``src.bench.overhead``."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from src.bench.common import autocast_for, sync
from src.bench.loops import BarePredictor, BareTrainer, MinimalModule, on_device
from src.training.dispatch import skip_noop_batch_hooks
from src.training.model import MarginClassifier
from src.training.pipeline import build

ABLATIONS = ("framework-nocb", "framework-min")


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Steps:
    """Per-step durations of one side in one repeat (steady state only)."""

    seconds: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)

    def add(self, seconds: float, images: int) -> None:
        self.seconds.append(seconds)
        self.images.append(images)

    @property
    def median_ips(self) -> float:
        return statistics.median(self.images) / statistics.median(self.seconds)

    @property
    def mean_ips(self) -> float:
        return sum(self.images) / sum(self.seconds)


class StepClock(pl.Callback):
    """Times each framework step after ``warmup`` and, in interleaved mode, runs one step of
    ``partner`` (the bare loop) after each; the partner's time is excluded from the framework's."""

    def __init__(self, warmup: int, device: str, partner: BareTrainer | BarePredictor | None = None) -> None:
        self.warmup, self.device, self.partner = warmup, device, partner
        self.framework, self.bare = Steps(), Steps()
        self._last: float | None = None

    def _tick(self, batch: Any, batch_idx: int) -> None:
        sync(self.device)
        now = time.perf_counter()
        if batch_idx >= self.warmup and self._last is not None:
            self.framework.add(now - self._last, int(batch[1].shape[0]))
        if self.partner is not None:
            seconds, images = self.partner.step()
            if batch_idx >= self.warmup:
                self.bare.add(seconds, images)
        self._last = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._last is None:  # first step: start the clock (no bare step before it)
            self._last = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self._tick(batch, idx)

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int, dataloader_idx: int = 0
    ) -> None:
        self._tick(batch, idx)


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, cfg: DictConfig, device: str, steps: int, warmup: int, predict_steps: int,
                 predict_warmup: int, workdir: Path, epochs: bool = False) -> None:
        self.cfg, self.device, self.workdir = cfg, device, workdir
        self.steps, self.warmup = steps, warmup
        self.predict_steps, self.predict_warmup = predict_steps, predict_warmup
        dm, _ = build(cfg)
        dm.setup("fit")
        self.datamodule = dm
        self.autocast, self.needs_scaler = autocast_for(cfg.trainer.precision, device)
        self.epochs = epochs  # bare loops may run past one epoch (each epoch in its own order)
        if not epochs and len(self.train_batches()) < steps + warmup:
            raise SystemExit(f"error: the training split has fewer than {steps + warmup} batches; lower --steps")
        if len(self.predict_batches()) < predict_steps + predict_warmup:
            raise SystemExit("error: the validation split has too few eval batches; lower --predict-steps")

    # data ----------------------------------------------------------------------------------
    def train_batches(self) -> Any:
        """The batches the framework sees in its first epoch (same seed, epoch 0, same augmentation):
        the datamodule's own, with no trainer attached."""
        self.datamodule.trainer = None
        return self.datamodule.train_dataloader()

    def predict_batches(self) -> Any:
        """The validation split in ``eval_batch_size`` batches."""
        self.datamodule.trainer = None
        return self.datamodule.val_dataloader()

    # models and trainers -------------------------------------------------------------------
    def fresh_model(self) -> MarginClassifier:
        pl.seed_everything(int(self.cfg.seed), verbose=False)
        _, model = build(self.cfg)
        return model.to(self.device)

    def bare_trainer(self) -> BareTrainer:
        batches = self.epoch_batches() if self.epochs else on_device(self.train_batches(), self.device)
        return BareTrainer(self.fresh_model(), self.cfg, batches, self.steps + self.warmup, self.autocast,
                           self.needs_scaler, self.device)

    def epoch_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Epoch after epoch of training batches, each epoch in the datamodule's order for it."""
        epoch = 0
        while True:
            batches = self.train_batches()
            batches.epoch_fn = lambda epoch=epoch: epoch
            yield from on_device(batches, self.device)
            epoch += 1

    def bare_predictor(self) -> BarePredictor:
        batches = on_device(self.predict_batches(), self.device)
        return BarePredictor(self.fresh_model(), self.cfg, batches, self.autocast, self.device)

    def trainer(self, callbacks: list[pl.Callback], logger: Any, **overrides: Any) -> pl.Trainer:
        accelerator = "gpu" if self.device == "cuda" else "cpu"
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            overrides.setdefault("enable_checkpointing", False)  # else Lightning adds one writing to ./
        return instantiate(
            self.cfg.trainer, accelerator=accelerator, callbacks=callbacks, logger=logger,
            enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(self.workdir), **overrides,
        )

    def fit(self, variant: str, clock: pl.Callback, profiler: Any = None) -> None:
        model: pl.LightningModule = self.fresh_model()
        if variant == "framework-min":
            model = MinimalModule(model)
        if variant in ("framework-nocb", "framework-min"):
            callbacks, logger = [clock], False
        else:
            callbacks = [instantiate(c) for c in self.cfg.callbacks.values() if c is not None] + [clock]
            logger = [instantiate(c) for c in self.cfg.logger.values() if c is not None]
        # Without a profiler of its own the trainer keeps the config's (QuietProfiler), as in src.train.
        overrides: dict[str, Any] = {"profiler": profiler} if profiler is not None else {}
        trainer = self.trainer(
            callbacks, logger, max_epochs=1, limit_train_batches=self.steps + self.warmup, limit_val_batches=0,
            num_sanity_val_steps=0, **overrides,
        )
        if variant != "framework-min":  # the project's module and callbacks, dispatched as src.train does
            skip_noop_batch_hooks(trainer.callbacks, model)
        trainer.fit(model, datamodule=self.datamodule)

    # one repeat ----------------------------------------------------------------------------
    def train_repeat(self, variant: str, mode: str, bare_first: bool) -> tuple[Steps, Steps]:
        """(framework steps, bare steps) of one repeat."""
        if mode == "interleaved":
            clock = StepClock(self.warmup, self.device, self.bare_trainer())
            self.fit(variant, clock)
            return clock.framework, clock.bare
        bare = Steps()

        def run_bare() -> None:
            loop = self.bare_trainer()
            for i in range(self.steps + self.warmup):
                seconds, images = loop.step()
                if i >= self.warmup:
                    bare.add(seconds, images)

        clock = StepClock(self.warmup, self.device)
        for side in ("bare", "fw") if bare_first else ("fw", "bare"):
            if side == "bare":
                run_bare()
            else:
                self.fit(variant, clock)
        return clock.framework, bare

    def predict_repeat(self, mode: str, bare_first: bool) -> tuple[Steps, Steps]:
        partner = self.bare_predictor()
        clock = StepClock(self.predict_warmup, self.device, partner if mode == "interleaved" else None)
        trainer = self.trainer([clock], False, limit_predict_batches=self.predict_steps + self.predict_warmup)
        bare = clock.bare

        def run_bare() -> None:
            for i in range(self.predict_steps + self.predict_warmup):
                seconds, images = partner.step()
                if i >= self.predict_warmup:
                    bare.add(seconds, images)

        sides = ("fw",) if mode == "interleaved" else (("bare", "fw") if bare_first else ("fw", "bare"))
        for side in sides:
            if side == "bare":
                run_bare()
            else:
                trainer.predict(self.fresh_model(), dataloaders=self.predict_batches(), return_predictions=True)
        return clock.framework, bare


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def summarise(repeats: list[dict[str, Steps]]) -> dict[str, Any]:
    """Per variant: median-step throughput per repeat, and the paired ratios to ``bare``."""
    out: dict[str, Any] = {}
    for variant in repeats[0]:
        entry: dict[str, Any] = {
            "ips": [r[variant].median_ips for r in repeats],
            "mean_ips": [r[variant].mean_ips for r in repeats],
        }
        entry["median_ips"] = statistics.median(entry["ips"])
        if not variant.startswith("bare"):
            pair = variant.replace("framework", "bare")
            entry["ratios"] = [r[variant].median_ips / r[pair].median_ips for r in repeats]
            entry["mean_ratios"] = [r[variant].mean_ips / r[pair].mean_ips for r in repeats]
            entry["median_ratio"] = statistics.median(entry["ratios"])
            # What the framework adds per step, in ms: per repeat the difference of the median steps,
            # then the median over repeats, with the spread (min, max) of both figures over repeats.
            entry["overhead_ms_per_repeat"] = [
                1000 * (statistics.median(r[variant].seconds) - statistics.median(r[pair].seconds)) for r in repeats
            ]
            entry["overhead_ms"] = statistics.median(entry["overhead_ms_per_repeat"])
            entry["ratio_range"] = [min(entry["ratios"]), max(entry["ratios"])]
            entry["overhead_ms_range"] = [min(entry["overhead_ms_per_repeat"]), max(entry["overhead_ms_per_repeat"])]
            entry["bare_step_ms"] = statistics.median(1000 * statistics.median(r[pair].seconds) for r in repeats)
            entry["median_mean_ratio"] = statistics.median(entry["mean_ratios"])
        out[variant] = entry
    return out


def decompose(summary: dict[str, Any]) -> dict[str, float]:
    """Extra ms per step, split: Lightning's loop (framework-min), the project's module
    (framework-nocb minus framework-min), its callbacks and loggers (framework minus framework-nocb)."""
    if not all(v in summary for v in ("framework", *ABLATIONS)):
        return {}
    fw, nocb, mini = (summary[v]["overhead_ms"] for v in ("framework", "framework-nocb", "framework-min"))
    return {"lightning_loop_ms": mini, "project_module_ms": nocb - mini, "project_callbacks_loggers_ms": fw - nocb,
            "total_ms": fw}


def print_table(title: str, summary: dict[str, Any], out: Any) -> None:
    print(f"\n{title}", file=out)
    print(f"  {'variant':<17} {'img/s':>8} {'ratio':>6} {'(means)':>7} {'+ms/step':>8}  per repeat: img/s | ratio",
          file=out)
    for variant, e in summary.items():
        ratio = f"{e['median_ratio']:.3f}" if "median_ratio" in e else ""
        mean_ratio = f"{e['median_mean_ratio']:.3f}" if "median_mean_ratio" in e else ""
        overhead = f"{e['overhead_ms']:.1f}" if "overhead_ms" in e else ""
        reps = " ".join(f"{v:.0f}" for v in e["ips"])
        if "ratios" in e:
            reps += " | " + " ".join(f"{r:.3f}" for r in e["ratios"])
            reps += " | +ms " + " ".join(f"{r:.2f}" for r in e["overhead_ms_per_repeat"])
        print(f"  {variant:<17} {e['median_ips']:>8.1f} {ratio:>6} {mean_ratio:>7} {overhead:>8}  {reps}", file=out)


def profile(bench: Bench, out: Any) -> dict[str, Any]:
    """Where a training step's time goes: the bare step's phases (device synced between phases)
    and the median time of each per-step Lightning action (``SimpleProfiler``)."""
    loop = bench.bare_trainer()
    phases: dict[str, float] = {}
    for i in range(bench.steps + bench.warmup):
        loop.step(phases if i >= bench.warmup else None)
    bare = {k: 1000 * v / bench.steps for k, v in phases.items()}
    print("\nbare step, ms per step: " + ", ".join(f"{k} {v:.1f}" for k, v in bare.items()), file=out)

    from pytorch_lightning.profilers import SimpleProfiler

    profiler = SimpleProfiler(dirpath=bench.workdir, filename="simple_profiler")  # its report goes to a file
    bench.fit("framework", StepClock(bench.warmup, bench.device), profiler=profiler)
    actions: dict[str, float] = {}
    for action, durations in profiler.recorded_durations.items():
        if len(durations) >= bench.steps:  # per-step actions only
            name = re.sub(r"\{.*\}", "", action)  # ModelCheckpoint{'monitor': ...}.hook -> ModelCheckpoint.hook
            actions[name] = 1000 * statistics.median(durations)
    print("framework, median ms per call of each per-step action (SimpleProfiler):", file=out)
    for name, ms in sorted(actions.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {ms:9.3f}  {name}", file=out)
    return {"bare_ms_per_step": bare, "lightning_ms_per_call": actions}
