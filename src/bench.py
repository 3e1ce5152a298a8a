"""Framework overhead benchmark: the Lightning pipeline against a plain PyTorch loop.

``python -m src.bench [--backbone seed_cnn] [--batch-size 128] [--steps N] [--repeats R] [--device auto]
[hydra overrides ...]``

Both sides train the same model (same backbone and loss head, same initial weights, same
optimiser and learning-rate schedule from ``conf/``) on the same in-memory batches
(``InMemoryBatches`` over the training split), in one process:

* **framework**: ``MarginClassifier`` fitted by the ``pl.Trainer`` built from ``conf/trainer``,
  with the real callbacks (checkpointing, LR monitor, confusion figures, history) and the
  TensorBoard logger, as in ``python -m src.train`` but with the progress bar and validation off;
* **bare**: a hand-written loop (forward, loss, ``zero_grad``, ``backward``, ``step``, scheduler).

Repeats alternate the order (framework first, then bare first, ...) so that a load change on a
shared machine hits both sides alike; each repeat gives a paired ratio framework / bare and the
report is the median over repeats. Throughput is measured in the steady state: from the end of
the ``warmup``-th step to the end of the last one (data, forward, backward, optimiser, hooks and
logging all inside the window); trainer start-up and teardown are reported apart. Inference
compares ``trainer.predict`` (``MarginClassifier.predict_step``) with ``head.predict(backbone(x))``
under ``torch.no_grad``.

``--ablate`` adds two framework variants that locate the overhead: ``framework-nolog`` (a
training step with no ``self.log`` and no metric update) and ``framework-nocb`` (no callbacks,
no logger). ``--profile`` adds a per-phase breakdown of one bare run (data, forward, backward,
optimiser) and Lightning's ``SimpleProfiler`` report of one framework run.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from src.data.batches import InMemoryBatches
from src.model import MarginClassifier
from src.pipeline import build
from src.utils.resolvers import register_resolvers

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TRAIN_VARIANTS = ("framework", "bare")
ABLATIONS = ("framework-nolog", "framework-nocb")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def compose_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """``conf/train.yaml`` composed as ``python -m src.train`` would, with ``hydra:`` resolvers
    pointing at ``output_dir`` (where checkpoints and TensorBoard files of the runs go)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
    return cfg


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device={device!r} is invalid: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device=cuda but torch.cuda.is_available() is False")
    return device


def autocast_for(precision: str, device: str) -> tuple[Callable[[], AbstractContextManager], bool]:
    """What Lightning's precision plugin does around the forward pass, for the bare loop:
    (context factory, whether a GradScaler is needed)."""
    p = str(precision)
    if p in ("32-true", "32", "64-true", "64"):
        return nullcontext, False
    if p == "bf16-mixed":
        return (lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)), False
    if p in ("16-mixed", "16"):
        if device != "cuda":
            raise SystemExit("error: precision 16-mixed needs CUDA; on CPU use bf16-mixed or 32-true")
        return (lambda: torch.autocast(device_type=device, dtype=torch.float16)), True
    raise SystemExit(f"error: the bare loop supports precision 32-true, bf16-mixed, 16-mixed, not {p!r}")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


@dataclass
class Timing:
    variant: str
    images: int = 0  # images inside the steady-state window
    seconds: float = 0.0  # steady-state window
    wall: float = 0.0  # everything, start-up and teardown included

    @property
    def ips(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


class StepClock(pl.Callback):
    """Clocks the steady state of a Lightning loop: from the end of batch ``warmup - 1`` to the
    end of the last batch (train or predict)."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device = warmup, device
        self.t0: float | None = None
        self.t1: float | None = None
        self.images = 0

    def _tick(self, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 < self.warmup:
            return
        sync(self.device)
        now = time.perf_counter()
        if self.t0 is None:
            self.t0 = now
        else:
            self.t1 = now
            self.images += int(batch[1].shape[0])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self._tick(batch, idx)

    def on_predict_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int, dataloader_idx: int = 0
    ) -> None:
        self._tick(batch, idx)

    def timing(self, variant: str, wall: float) -> Timing:
        if self.t0 is None or self.t1 is None:
            raise RuntimeError("the steady-state window is empty: use --steps >= 1 and enough data")
        return Timing(variant, self.images, self.t1 - self.t0, wall)


class _NoLogClassifier(MarginClassifier):
    """Ablation: the training step without ``self.log`` and without the accuracy update."""

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return self.head(self.embed(images), labels)


# --------------------------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    cfg: DictConfig
    device: str
    steps: int
    warmup: int
    predict_steps: int
    predict_warmup: int
    workdir: Path | None = None
    datamodule: Any = None
    phases: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dm, _ = build(self.cfg)
        dm.setup("fit")
        if self.device != "cpu":  # what setup() does when a trainer on that device is attached
            dm._train = tuple(t.to(self.device) for t in dm._train)
            dm._val = tuple(t.to(self.device) for t in dm._val)
        self.datamodule = dm
        self.autocast, self.needs_scaler = autocast_for(self.cfg.trainer.precision, self.device)
        needed = self.steps + self.warmup
        if len(self.train_batches()) < needed:
            raise SystemExit(f"error: the training split has fewer than {needed} batches; lower --steps")

    # data ----------------------------------------------------------------------------------
    def train_batches(self) -> InMemoryBatches:
        """The batches the framework sees in its first epoch (same seed, epoch 0, same augmentation)."""
        dm = self.datamodule
        return InMemoryBatches(
            *dm._train, batch_size=dm.batch_size, shuffle=True, seed=dm.seed, mean=dm.mean, std=dm.std,
            hflip=dm.hflip, crop_padding=dm.crop_padding, channels_last=dm.channels_last,
        )

    def predict_batches(self) -> InMemoryBatches:
        dm = self.datamodule
        return InMemoryBatches(
            *dm._train, batch_size=dm.eval_batch_size, shuffle=False, mean=dm.mean, std=dm.std,
            channels_last=dm.channels_last,
        )

    def fresh_model(self, cls: type[MarginClassifier] = MarginClassifier) -> MarginClassifier:
        pl.seed_everything(int(self.cfg.seed), verbose=False)
        _, model = build(self.cfg)
        model.__class__ = cls  # same constructor arguments; only the training step differs
        return model.to(self.device)

    def trainer(self, callbacks: list[pl.Callback], logger: Any, **overrides: Any) -> pl.Trainer:
        accelerator = "gpu" if self.device == "cuda" else "cpu"
        return instantiate(self.cfg.trainer, accelerator=accelerator, callbacks=callbacks, logger=logger, **overrides)

    # training ------------------------------------------------------------------------------
    def train_framework(self, variant: str = "framework") -> Timing:
        model = self.fresh_model(_NoLogClassifier if variant == "framework-nolog" else MarginClassifier)
        clock = StepClock(self.warmup, self.device)
        if variant == "framework-nocb":
            callbacks, logger = [clock], False
        else:
            callbacks = [instantiate(c) for c in self.cfg.callbacks.values() if c is not None] + [clock]
            logger = [instantiate(c) for c in self.cfg.logger.values() if c is not None]
        trainer = self.trainer(
            callbacks, logger, max_epochs=1, limit_train_batches=self.steps + self.warmup, limit_val_batches=0,
            num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.fit(model, datamodule=self.datamodule)
        sync(self.device)
        return clock.timing(variant, time.perf_counter() - start)

    def train_bare(self, phases: dict[str, float] | None = None) -> Timing:
        """Same model, optimiser, schedule and batches; ``phases`` (if given) collects the time
        spent in each phase of the steady-state steps (adds a device sync between phases)."""
        start = time.perf_counter()
        reference = self.fresh_model()
        backbone, head = copy.deepcopy(reference.backbone), copy.deepcopy(reference.head)
        embed = torch.compile(backbone) if self.cfg.compile else backbone
        params = list(backbone.parameters()) + list(head.parameters())
        optimizer = instantiate(self.cfg.optimizer)(params=params)
        total = self.steps + self.warmup
        factory = instantiate(self.cfg.scheduler) if self.cfg.get("scheduler") else None
        scheduler = factory(optimizer=optimizer, total_steps=total) if factory else None
        scaler = torch.amp.GradScaler(self.device) if self.needs_scaler else None
        backbone.train()
        head.train()
        t0 = t1 = 0.0
        images = 0
        mark = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal mark
            if phases is None:
                return
            sync(self.device)
            now = time.perf_counter()
            if step >= self.warmup:
                phases[name] = phases.get(name, 0.0) + now - mark
            mark = now

        batches = iter(self.train_batches())
        for step in range(total):
            lap("other")
            images_b, labels = next(batches)
            lap("data")
            with self.autocast():
                loss = head(embed(images_b), labels)
            lap("forward+loss")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                lap("backward")
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                lap("backward")
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            lap("optimiser")
            if step + 1 >= self.warmup:
                sync(self.device)
                now = time.perf_counter()
                if step + 1 == self.warmup:
                    t0 = now
                else:
                    t1, images = now, images + int(labels.shape[0])
        sync(self.device)
        return Timing("bare", images, t1 - t0, time.perf_counter() - start)

    # inference -----------------------------------------------------------------------------
    def predict_framework(self) -> Timing:
        model = self.fresh_model()
        clock = StepClock(self.predict_warmup, self.device)
        trainer = self.trainer(
            [clock], False, limit_predict_batches=self.predict_steps + self.predict_warmup,
            enable_progress_bar=False, enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.predict(model, dataloaders=self.predict_batches(), return_predictions=True)
        sync(self.device)
        return clock.timing("framework", time.perf_counter() - start)

    def predict_bare(self) -> Timing:
        start = time.perf_counter()
        reference = self.fresh_model()
        backbone, head = copy.deepcopy(reference.backbone).eval(), copy.deepcopy(reference.head).eval()
        embed = torch.compile(backbone) if self.cfg.compile else backbone
        outputs: list[torch.Tensor] = []
        t0 = t1 = 0.0
        images = 0
        with torch.no_grad():
            for step, (x, labels) in enumerate(self.predict_batches()):
                if step >= self.predict_steps + self.predict_warmup:
                    break
                with self.autocast():
                    outputs.append(head.predict(embed(x)))
                if step + 1 >= self.predict_warmup:
                    sync(self.device)
                    now = time.perf_counter()
                    if step + 1 == self.predict_warmup:
                        t0 = now
                    else:
                        t1, images = now, images + int(labels.shape[0])
        sync(self.device)
        return Timing("bare", images, t1 - t0, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def alternate(variants: Sequence[str], repeats: int) -> Iterable[tuple[int, list[str]]]:
    """Repeat r runs the variants in order when r is even, reversed when odd."""
    for r in range(repeats):
        yield r, list(variants) if r % 2 == 0 else list(reversed(variants))


def summarise(rows: list[dict[str, Timing]], baseline: str = "bare") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant in rows[0]:
        ips = [row[variant].ips for row in rows]
        entry: dict[str, Any] = {"ips": ips, "median_ips": statistics.median(ips)}
        entry["median_wall_s"] = statistics.median(row[variant].wall for row in rows)
        if variant != baseline:
            ratios = [row[variant].ips / row[baseline].ips for row in rows]
            entry["ratios"] = ratios
            entry["median_ratio"] = statistics.median(ratios)
        out[variant] = entry
    return out


def print_table(title: str, summary: dict[str, Any], out: Any = sys.stdout) -> None:
    print(f"\n{title}", file=out)
    print(f"  {'variant':<17} {'median img/s':>12} {'ratio/bare':>10}  {'per repeat (img/s)':<30} wall s", file=out)
    for variant, e in summary.items():
        ratio = f"{e['median_ratio']:.3f}" if "median_ratio" in e else "1"
        reps = " ".join(f"{v:.0f}" for v in e["ips"])
        print(f"  {variant:<17} {e['median_ips']:>12.1f} {ratio:>10}  {reps:<30} {e['median_wall_s']:.1f}", file=out)
    for variant, e in summary.items():
        if "ratios" in e:
            print(f"  {variant} / bare per repeat: " + " ".join(f"{r:.3f}" for r in e["ratios"]), file=out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="seed_cnn", help="a conf/backbone choice (default seed_cnn)")
    p.add_argument("--loss", default="softmax", help="a conf/loss choice (default softmax)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--steps", type=int, default=12, help="timed training steps per run (default 12)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default 2)")
    p.add_argument("--predict-steps", type=int, default=4, help="timed inference batches (eval_batch_size)")
    p.add_argument("--predict-warmup", type=int, default=1, help="untimed inference batches first")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are reported (default 3)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--ablate", action="store_true", help="add framework-nolog and framework-nocb variants")
    p.add_argument("--profile", action="store_true", help="add a per-phase breakdown (bare) and SimpleProfiler")
    p.add_argument("--no-predict", action="store_true", help="skip the inference comparison")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.precision=bf16-mixed channels_last=true")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.repeats < 1 or args.predict_steps < 1 or args.predict_warmup < 1:
        p.error("--steps, --warmup, --predict-steps, --predict-warmup and --repeats must be >= 1")
    return args


def quiet_lightning() -> None:
    """Drop Lightning's per-Trainer banners (GPU available, tips): a benchmark builds many."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    quiet_lightning()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="bench_"))
    overrides = [
        f"backbone={args.backbone}", f"loss={args.loss}", f"data.batch_size={args.batch_size}",
        *args.overrides,
    ]
    cfg = compose_config(overrides, workdir)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    bench = Bench(cfg, device, args.steps, args.warmup, args.predict_steps, args.predict_warmup, workdir)
    setting = {
        "backbone": args.backbone, "loss": args.loss, "batch_size": args.batch_size,
        "eval_batch_size": int(cfg.data.eval_batch_size), "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.channels_last), "compile": bool(cfg.compile),
        "matmul_precision": str(cfg.matmul_precision), "device": device, "threads": torch.get_num_threads(),
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "overrides": list(args.overrides),
    }
    print("setting: " + json.dumps(setting), file=out)

    variants = ["framework", *(ABLATIONS if args.ablate else ()), "bare"]
    train_rows: list[dict[str, Timing]] = []
    for r, order in alternate(variants, args.repeats):
        row = {}
        for variant in order:
            row[variant] = bench.train_bare() if variant == "bare" else bench.train_framework(variant)
            print(f"  train repeat {r} {variant:<16} {row[variant].ips:8.1f} img/s", file=out, flush=True)
        train_rows.append({v: row[v] for v in variants})
    results: dict[str, Any] = {"setting": setting, "train": summarise(train_rows)}
    print_table(f"training, steady state ({args.steps} steps x {args.batch_size} images, median of {args.repeats})",
                results["train"], out)

    if not args.no_predict:
        predict_rows: list[dict[str, Timing]] = []
        for r, order in alternate(TRAIN_VARIANTS, args.repeats):
            row = {}
            for variant in order:
                row[variant] = bench.predict_bare() if variant == "bare" else bench.predict_framework()
                print(f"  predict repeat {r} {variant:<10} {row[variant].ips:8.1f} img/s", file=out, flush=True)
            predict_rows.append({v: row[v] for v in TRAIN_VARIANTS})
        results["predict"] = summarise(predict_rows)
        print_table(f"inference ({args.predict_steps} batches x {cfg.data.eval_batch_size} images)",
                    results["predict"], out)

    if args.profile:
        results["profile"] = profile(bench, out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=lambda o: asdict(o)))
    return results


def profile(bench: Bench, out: Any = sys.stdout) -> dict[str, Any]:
    """Where a training step's time goes: bare phases (with a sync between phases) and the mean
    time per call of each Lightning action (``SimpleProfiler``), per step of the window."""
    phases: dict[str, float] = {}
    bench.train_bare(phases)
    per_step = {k: 1000 * v / bench.steps for k, v in phases.items()}
    print("\nbare loop, ms per step: " + ", ".join(f"{k} {v:.1f}" for k, v in per_step.items()), file=out)

    from pytorch_lightning.profilers import SimpleProfiler

    profiler = SimpleProfiler(dirpath=bench.workdir, filename="simple_profiler")  # report to a file
    model = bench.fresh_model()
    callbacks = [instantiate(c) for c in bench.cfg.callbacks.values() if c is not None]
    logger = [instantiate(c) for c in bench.cfg.logger.values() if c is not None]
    trainer = bench.trainer(
        callbacks, logger, max_epochs=1, limit_train_batches=bench.steps + bench.warmup, limit_val_batches=0,
        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False, profiler=profiler,
    )
    trainer.fit(model, datamodule=bench.datamodule)
    actions = {}
    for action, durations in profiler.recorded_durations.items():
        if len(durations) >= bench.steps:  # per-step actions only
            name = re.sub(r"\{.*\}", "", action)  # ModelCheckpoint{'monitor': ...}.hook -> ModelCheckpoint.hook
            actions[name] = 1000 * statistics.median(durations)
    print("Lightning per-step actions (median ms per call, SimpleProfiler):", file=out)
    for action, ms in sorted(actions.items(), key=lambda kv: -kv[1])[:25]:
        print(f"  {ms:9.3f}  {action}", file=out)
    return {"bare_ms_per_step": per_step, "lightning_ms_per_call": actions}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
