"""Framework overhead benchmark: the Lightning pipeline against a plain PyTorch loop.

``python -m src.bench [--backbone seed_cnn] [--batch-size 128] [--steps N] [--repeats R] [--device auto]
[hydra overrides ...]``

Both sides train the same model (same backbone and loss head, same initial weights, same
optimiser and learning-rate schedule from ``conf/``) on the same in-memory batches
(``InMemoryBatches`` over the training split, first epoch's order), in one process:

* **framework**: ``MarginClassifier`` fitted by the ``pl.Trainer`` built from ``conf/trainer``,
  with the real callbacks (``conf/callbacks``) and loggers (``conf/logger``), as in
  ``python -m src.train``, but with the progress bar, the model summary and validation off;
* **bare**: a hand-written step: forward, loss, ``zero_grad``, ``backward``, ``step``, scheduler.

Method (made for a shared, noisy CPU). ``--mode interleaved`` (default): one ``trainer.fit`` per
repeat, and after every framework step a callback runs one bare step; the framework's step time
is the time from the end of one bare step to the end of the next framework step, so the two
sides alternate step by step and see the same machine load. ``--mode alternating``: whole runs
alternate (framework then bare, then bare then framework, ...). Either way the first
``--warmup`` steps are not timed, each step's duration is kept, and a repeat's ratio is
``median bare step time / median framework step time`` (framework throughput relative to the
bare loop; medians shrug off the steps that another process preempted). The report gives the
median over repeats, and the ratio of mean step times beside it. Inference compares
``trainer.predict`` (``MarginClassifier.predict_step``) with ``head.predict(backbone(x))`` under
``torch.no_grad`` the same way.

``--ablate`` adds two framework variants that split the overhead: ``framework-min`` (``MinimalModule``:
the same backbone, head, optimiser and schedule in the smallest LightningModule, no callbacks, no
logger: what Lightning's loop costs) and ``framework-nocb`` (``MarginClassifier``, no callbacks,
no logger: plus the project's training step, its metric and ``self.log`` calls); the full
``framework`` adds the project's callbacks and loggers. Each variant is paired with its own bare
loop. ``--profile`` adds a per-phase breakdown of the bare step (data, forward, backward, optimiser)
and the per-step Lightning actions timed by ``SimpleProfiler``.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from src.bench.common import autocast_for, compose_config, quiet_lightning, resolve_device, sync, write_results
from src.training.dispatch import skip_noop_batch_hooks
from src.training.model import MarginClassifier
from src.training.pipeline import build
from src.utils.hardware import cpu_model, flush_denormals

ABLATIONS = ("framework-nocb", "framework-min")


# --------------------------------------------------------------------------------------------
# The bare side
# --------------------------------------------------------------------------------------------


class BareTrainer:
    """The plain PyTorch training step on copies of ``model``'s backbone and head."""

    def __init__(self, model: MarginClassifier, cfg: DictConfig, batches: Iterator, total_steps: int,
                 autocast: Callable[[], AbstractContextManager], scaler: bool, device: str) -> None:
        self.backbone, self.head = copy.deepcopy(model.backbone), copy.deepcopy(model.head)
        self.embed = torch.compile(self.backbone) if cfg.compile else self.backbone
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.optimizer = instantiate(cfg.optimizer)(params=params)
        factory = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
        self.scheduler = factory(optimizer=self.optimizer, total_steps=total_steps) if factory else None
        self.scaler = torch.amp.GradScaler(device) if scaler else None
        self.autocast, self.device, self.batches = autocast, device, batches
        self.backbone.train()
        self.head.train()

    def step(self, phases: dict[str, float] | None = None) -> tuple[float, int]:
        """One training step; returns (seconds, images). With ``phases``, adds each phase's time
        to it (syncing the device between phases)."""
        start = mark = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal mark
            if phases is not None:
                sync(self.device)
                now = time.perf_counter()
                phases[name] = phases.get(name, 0.0) + now - mark
                mark = now

        images, labels = next(self.batches)
        lap("data")
        with self.autocast():
            loss = self.head(self.embed(images), labels)
        lap("forward+loss")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            lap("backward")
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            lap("backward")
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        lap("optimiser")
        sync(self.device)
        return time.perf_counter() - start, int(labels.shape[0])


class BarePredictor:
    """The plain inference step: ``head.predict(backbone(x))`` under ``torch.no_grad``."""

    def __init__(self, model: MarginClassifier, cfg: DictConfig, batches: Iterator,
                 autocast: Callable[[], AbstractContextManager], device: str) -> None:
        self.backbone, self.head = copy.deepcopy(model.backbone).eval(), copy.deepcopy(model.head).eval()
        self.embed = torch.compile(self.backbone) if cfg.compile else self.backbone
        self.autocast, self.device, self.batches = autocast, device, batches
        self.outputs: list[torch.Tensor] = []  # kept, as trainer.predict keeps its predictions

    def step(self, phases: dict[str, float] | None = None) -> tuple[float, int]:
        start = time.perf_counter()
        images, labels = next(self.batches)
        with torch.no_grad(), self.autocast():
            self.outputs.append(self.head.predict(self.embed(images)))
        sync(self.device)
        return time.perf_counter() - start, int(labels.shape[0])


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


class MinimalModule(pl.LightningModule):
    """Lightning's own cost: the same backbone, head, optimiser and schedule in the smallest
    LightningModule (no metrics, no ``self.log``), trained without callbacks or loggers."""

    def __init__(self, model: MarginClassifier) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, model.head
        self.optimizer_factory, self.scheduler_factory = model.optimizer_factory, model.scheduler_factory

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return self.head(self.backbone(images), labels)

    def configure_optimizers(self) -> Any:
        return MarginClassifier.configure_optimizers(self)  # type: ignore[arg-type]


def on_device(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: str) -> Iterator:
    """The batches on ``device`` (the datamodule keeps them there when a GPU trainer is attached)."""
    for images, labels in batches:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


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


def compare(args: argparse.Namespace, base: list[str], device: str, workdir: Path, out: Any) -> dict[str, Any]:
    """Speed options against each other: one bare training loop per configuration (base
    overrides plus one ``--compare`` entry each; the first is the base itself), stepped in turn
    (rotating the order every step) so that all see the same machine load. The framework adds
    the same few milliseconds per step to each (see the framework / bare ratio), so the bare
    loops rank the options. ``threads=N`` in an entry sets ``torch.set_num_threads`` for it, and
    ``flush_denormals=false`` switches flush-to-zero off for its steps only (on the CPU; the switch
    is not timed), so a run with and one without flushing see the same load step by step. Beside
    the median step, the total time of all steps (where rare slow steps show) and the median step
    per ``--window`` steps (the curve) are reported."""
    entries = [("base", [])] + [(c, c.split()) for c in args.compare]
    variants = []
    for name, tokens in entries:
        threads = [int(t.split("=", 1)[1]) for t in tokens if t.startswith("threads=")]
        cfg = compose_config([*base, *(t for t in tokens if not t.startswith("threads="))], workdir)
        b = Bench(cfg, device, args.steps, args.warmup, args.predict_steps, args.predict_warmup, workdir, epochs=True)
        variants.append((name, b, threads[-1] if threads else torch.get_num_threads()))
    flush = {name: bool(b.cfg.get("flush_denormals", True)) and device == "cpu" for name, b, _ in variants}
    current_flush: bool | None = None
    default_threads = torch.get_num_threads()
    rows: list[dict[str, Steps]] = []
    try:
        for r in range(args.repeats):
            loops = [(name, b.bare_trainer(), t, str(b.cfg.matmul_precision)) for name, b, t in variants]
            row = {name: Steps() for name, *_ in loops}
            for step in range(args.steps + args.warmup):
                k = step % len(loops)
                for name, loop, threads, matmul in loops[k:] + loops[:k]:
                    torch.set_num_threads(threads)
                    torch.set_float32_matmul_precision(matmul)
                    if device == "cpu" and flush[name] != current_flush:
                        flush_denormals(flush[name])
                        current_flush = flush[name]
                    seconds, images = loop.step()
                    if step >= args.warmup:
                        row[name].add(seconds, images)
            rows.append(row)
            print(f"  compare repeat {r}: " + ", ".join(f"{k} {v.median_ips:.0f}" for k, v in row.items()) + " img/s",
                  file=out, flush=True)
    finally:
        torch.set_num_threads(default_threads)
        if device == "cpu":
            flush_denormals(bool(variants[0][1].cfg.get("flush_denormals", True)))
    summary: dict[str, Any] = {}
    w = args.window
    for name in rows[0]:
        ips = [row[name].median_ips for row in rows]
        ratios = [row[name].median_ips / row["base"].median_ips for row in rows]
        totals = [sum(row[name].seconds) for row in rows]
        curve = [[1000 * statistics.median(row[name].seconds[i:i + w]) for i in range(0, len(row[name].seconds), w)]
                 for row in rows]
        summary[name] = {"ips": ips, "median_ips": statistics.median(ips), "ratios": ratios,
                         "median_ratio": statistics.median(ratios), "total_s": totals,
                         "total_ratios": [t / sum(row["base"].seconds) for t, row in zip(totals, rows, strict=True)],
                         "curve_ms": curve, "max_step_ms": [1000 * max(row[name].seconds) for row in rows]}
    print(f"\nspeed options, bare training loop: img/s of the median step ({args.steps} steps, median of "
          f"{args.repeats} repeats); ratio = option / base", file=out)
    for name, e in summary.items():
        reps = " ".join(f"{v:.0f}" for v in e["ips"]) + " | " + " ".join(f"{r:.3f}" for r in e["ratios"])
        print(f"  {name:<36} {e['median_ips']:>8.1f} {e['median_ratio']:>6.3f}  {reps}", file=out)
    print(f"total time of the {args.steps} timed steps, ratio to base, per repeat; slowest step:", file=out)
    for name, e in summary.items():
        print(f"  {name:<36} " + " ".join(f"{t:.1f} s ({r:.2f}x)" for t, r in zip(e["total_s"], e["total_ratios"],
                                                                                  strict=True))
              + "; " + " ".join(f"{m:.0f} ms" for m in e["max_step_ms"]), file=out)
    print(f"median step per {w} steps (ms), repeat 0:", file=out)
    for name, e in summary.items():
        print(f"  {name:<36} " + " ".join(f"{v:.0f}" for v in e["curve_ms"][0]), file=out)
    return summary


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="seed_cnn", help="a conf/backbone choice (default seed_cnn)")
    p.add_argument("--loss", default="softmax", help="a conf/loss choice (default softmax)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--steps", type=int, default=100, help="timed training steps per repeat (default 100)")
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first (default 5)")
    p.add_argument("--predict-steps", type=int, default=4, help="timed inference batches of eval_batch_size")
    p.add_argument("--predict-warmup", type=int, default=1, help="untimed inference batches first (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="repeats; medians are reported (default 5)")
    p.add_argument("--mode", choices=("interleaved", "alternating"), default="interleaved",
                   help="alternate step by step (default) or whole runs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the config's threads=auto)")
    p.add_argument("--ablate", action="store_true", help="add the framework-nocb and framework-min variants")
    p.add_argument("--profile", action="store_true", help="add a per-phase breakdown and SimpleProfiler's actions")
    p.add_argument("--no-predict", action="store_true", help="skip the inference comparison")
    p.add_argument("--compare", action="append", default=[], metavar="OVERRIDES",
                   help="instead of framework vs bare: rank speed options with bare loops stepped in turn; "
                   "repeatable, e.g. --compare channels_last=true --compare 'trainer.precision=bf16-mixed'")
    p.add_argument("--window", type=int, default=50, help="--compare: steps per point of the step-time curve")
    p.add_argument("--json", type=Path, default=None,
                   help="also write the results to this JSON file (rewritten after every training repeat)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.precision=bf16-mixed channels_last=true")
    args = p.parse_args(argv)
    if min(args.steps, args.warmup, args.repeats, args.predict_steps, args.predict_warmup) < 1:
        p.error("--steps, --warmup, --predict-steps, --predict-warmup and --repeats must be >= 1")
    return args


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    quiet_lightning()
    device = resolve_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="bench_"))
    overrides = [f"backbone={args.backbone}", f"loss={args.loss}", f"data.batch_size={args.batch_size}",
                 *([f"threads={args.threads}"] if args.threads else []), *args.overrides]
    if args.compare:
        summary = compare(args, overrides, device, workdir, out)
        results = {"setting": {"base": overrides, "device": device, "threads": torch.get_num_threads(),
                               "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                               "cpu": cpu_model()}, "compare": summary}
        print("setting: " + json.dumps(results["setting"]), file=out)
        if args.json:
            write_results(args.json, results)
        return results
    cfg = compose_config(overrides, workdir)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    bench = Bench(cfg, device, args.steps, args.warmup, args.predict_steps, args.predict_warmup, workdir)
    setting = {
        "backbone": args.backbone, "loss": args.loss, "batch_size": args.batch_size,
        "eval_batch_size": int(cfg.data.eval_batch_size), "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.channels_last), "compile": bool(cfg.compile),
        "matmul_precision": str(cfg.matmul_precision), "device": device, "threads": torch.get_num_threads(),
        "flush_denormals": cfg.hardware["flush_denormals"], "cpu": cpu_model(),
        "mode": args.mode, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "predict_steps": args.predict_steps, "overrides": list(args.overrides),
    }
    print("setting: " + json.dumps(setting), file=out, flush=True)
    results: dict[str, Any] = {"setting": setting}

    variants = ["framework", *(ABLATIONS if args.ablate else ())]
    train: list[dict[str, Steps]] = []
    for r in range(args.repeats):
        row: dict[str, Steps] = {}
        for variant in variants if r % 2 == 0 else reversed(variants):
            row[variant], row[variant.replace("framework", "bare")] = bench.train_repeat(variant, args.mode, r % 2 == 1)
        train.append(row)
        print(f"  train repeat {r}: " + ", ".join(f"{k} {v.median_ips:.0f}" for k, v in sorted(row.items())) +
              " img/s", file=out, flush=True)
        if args.json and r + 1 < args.repeats:  # a run cut short (a time limit) keeps its finished repeats
            write_results(args.json, {**results, "train": summarise(train), "train_repeats_done": r + 1})
    results["train"], results["train_repeats_done"] = summarise(train), len(train)
    print_table(f"training: img/s of the median step ({args.steps} steps x {args.batch_size} images, "
                f"median of {args.repeats} repeats); ratio = framework / bare", results["train"], out)
    split = decompose(results["train"])
    if split:
        results["train_overhead_split_ms"] = split
        print("  extra ms per step: " + ", ".join(f"{k[:-3]} {v:+.2f}" for k, v in split.items()), file=out)

    if not args.no_predict:
        predict: list[dict[str, Steps]] = []
        for r in range(args.repeats):
            fw, bare = bench.predict_repeat(args.mode, r % 2 == 1)
            predict.append({"framework": fw, "bare": bare})
            print(f"  predict repeat {r}: framework {fw.median_ips:.0f}, bare {bare.median_ips:.0f} img/s",
                  file=out, flush=True)
        results["predict"] = summarise(predict)
        print_table(f"inference: img/s of the median batch ({args.predict_steps} batches x "
                    f"{cfg.data.eval_batch_size} images)", results["predict"], out)

    if args.profile:
        results["profile"] = profile(bench, out)
    if args.json:
        write_results(args.json, results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
