"""Steady-state benchmark: a whole training run, timed step by step and phase by phase.

``python -m src.bench steady [--warm-epochs 1] [--epochs 1] [--measure-steps N] [--flush-cycle K]
[--checkpoint PATH] [--no-test] [--json FILE] [hydra overrides ...]``

It trains as ``python -m src.train`` does: the config composed from ``conf/`` with the same
precision, threads and flush-to-zero choices (``configure_hardware``), the datamodule and
``MarginClassifier`` from ``src.training.pipeline.build``, the callbacks and loggers of ``conf/callbacks`` and
``conf/logger``, the checkpoint plugin, validation every epoch, and after fitting the test on the best
checkpoint and the post-test analyses. Only the progress bar is off. One callback appended last
(``RunClock``) records:

* every training step's wall time (end of one step to the end of the next; an epoch's first step
  from its start), so the report has the step-time curve (median per ``--window`` steps) and the
  median of the ``--epochs`` measured epochs that follow ``--warm-epochs`` warm-up epochs (or a
  checkpoint: ``--checkpoint``), i.e. from a partly-trained state, not from initialisation;
* per epoch, what is not a training step: validation (its loop, the confusion figure and the
  embedding plots drawn at its end), checkpoint writes (``Trainer.save_checkpoint``), the epoch-end
  hooks, and the rest; per run, start-up (config, data, model, trainer, the sanity check) and the
  test with its analyses.

``--flush-cycle K`` (CPU): from the first measured epoch on, flush-to-zero is switched off and on
every K steps (``src.utils.hardware.flush_denormals``), so the two settings alternate on the same
partly-trained model under the same machine load; the report gives the median step with flush on
and off, and their ratio. ``--measure-steps N`` stops the run N steps into the measured epochs.
The run keeps the config's ``trainer.max_epochs`` (so the learning-rate schedule is the one
``src.train`` would follow) and stops after the measured epochs; a ``--checkpoint`` must come from
a run with the same plan.

``--flush-ab``: the whole run twice in one process, from the same seed, with ``flush_denormals=true``
then ``false``; the report puts their step-time curves side by side (the ratio per window of
steps) and compares the training time of each epoch. Subnormals appear part-way through bf16
training from initialisation and the slow steps come and go, so this compares the same steps of
two runs rather than switching the flag inside one (which would flush the state it measures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.analysis.embeddings import run_analyses
from src.bench.common import compose_config, quiet_lightning, write_results
from src.training.pipeline import build, build_trainer
from src.utils.hardware import cpu_model, flush_denormals

EPOCH_HOOKS = ("on_train_epoch_end", "on_validation_epoch_end", "on_validation_end")


class RunClock(pl.Callback):
    """Step times, epoch phases and (optionally) flush-to-zero switched every ``flush_cycle`` steps."""

    def __init__(self, measured_from_epoch: int, measure_steps: int | None, flush_cycle: int | None,
                 flush: bool = True, last_epoch: int | None = None) -> None:
        self.measured_from, self.measure_steps, self.flush_cycle = measured_from_epoch, measure_steps, flush_cycle
        self.last_epoch = last_epoch  # stop after this epoch (the schedules keep the config's max_epochs)
        self.steps: list[dict[str, Any]] = []  # epoch, step, seconds, flush
        self.epochs: list[dict[str, float]] = []
        self.marks: dict[str, float] = {}
        self.flush = flush
        self._last: float | None = None
        self._measured = 0
        self._epoch: dict[str, float] | None = None  # the epoch under way
        self._val_start = 0.0

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter())

    # training ------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.mark("train_start")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close_epoch()
        self._epoch = {"epoch": trainer.current_epoch, "start": time.perf_counter(), "validation_s": 0.0,
                       "checkpoint_s": 0.0}
        self._last = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        if self.flush_cycle and trainer.current_epoch >= self.measured_from:
            want = (self._measured // self.flush_cycle) % 2 == 0  # on, off, on, ... every K steps
            if want != self.flush:
                flush_denormals(want)
                self.flush = want
                self._last = time.perf_counter()  # the switch itself is not a training step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           idx: int) -> None:
        now = time.perf_counter()
        measured = trainer.current_epoch >= self.measured_from
        self.steps.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                           "seconds": now - (self._last or now), "flush": self.flush, "measured": measured})
        self._measured += measured
        if measured and self.measure_steps and self._measured >= self.measure_steps:
            trainer.should_stop = True
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is not None:
            self._epoch["train_end"] = time.perf_counter()
        if self.last_epoch is not None and trainer.current_epoch >= self.last_epoch:
            trainer.should_stop = True

    # validation ----------------------------------------------------------------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and self._epoch is not None:
            self._epoch["validation_s"] += time.perf_counter() - self._val_start
        elif trainer.sanity_checking:
            self.marks["sanity_s"] = time.perf_counter() - self._val_start

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close_epoch()

    def add_checkpoint(self, seconds: float) -> None:
        """A ``Trainer.save_checkpoint`` call: counted in the open epoch, else outside epochs."""
        if self._epoch is not None:
            self._epoch["checkpoint_s"] += seconds
        else:
            self.marks["checkpoints_outside_epochs_s"] = self.marks.get("checkpoints_outside_epochs_s", 0.0) + seconds

    def close_epoch(self) -> None:
        """An epoch ends when the next begins (or training ends): after every epoch-end hook, the
        checkpoint callbacks' included (Lightning runs those last)."""
        if self._epoch is None:
            return
        e = self._epoch
        end = time.perf_counter()
        steps = [s["seconds"] for s in self.steps if s["epoch"] == e["epoch"]]
        row = {"epoch": e["epoch"], "wall_s": end - e["start"], "steps": len(steps), "train_steps_s": sum(steps),
               "median_step_ms": 1000 * statistics.median(steps) if steps else float("nan"),
               "validation_s": e["validation_s"], "checkpoint_s": e["checkpoint_s"]}
        row["other_s"] = row["wall_s"] - row["train_steps_s"] - row["validation_s"] - row["checkpoint_s"]
        self.epochs.append(row)
        self._epoch = None


def _timed(fn: Callable[..., Any], add: Callable[[float], None]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            add(time.perf_counter() - start)

    return wrapper


def time_epoch_hooks(callbacks: list[pl.Callback], totals: dict[str, float]) -> None:
    """Wrap each callback's epoch-level hooks (never a per-step one) to add their time to ``totals``."""
    for cb in callbacks:
        for hook in EPOCH_HOOKS:
            if getattr(type(cb), hook) is getattr(pl.Callback, hook):
                continue
            key = f"{type(cb).__name__}.{hook}"

            def add(seconds: float, key: str = key) -> None:
                totals[key] = totals.get(key, 0.0) + seconds

            setattr(cb, hook, _timed(getattr(cb, hook), add))


def _checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", 0)) + 1


def steady_run(cfg: DictConfig, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    """One run as src.train makes it, timed; returns the raw timings."""
    start_epoch = _checkpoint_epoch(args.checkpoint) if args.checkpoint else 0
    measured_from = start_epoch + (0 if args.checkpoint else args.warm_epochs)
    planned = int(cfg.trainer.max_epochs)
    if measured_from + args.epochs > planned:
        raise SystemExit(f"error: epochs {measured_from}..{measured_from + args.epochs - 1} are past "
                         f"trainer.max_epochs={planned} (the LR schedule's length); raise trainer.max_epochs")
    clock = RunClock(measured_from, args.measure_steps, args.flush_cycle, bool(cfg.get("flush_denormals", True)),
                     last_epoch=measured_from + args.epochs - 1)
    hooks: dict[str, float] = {}
    t = time.perf_counter()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule, model = build(cfg)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    time_epoch_hooks(callbacks, hooks)
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    trainer = build_trainer(cfg, model, [*callbacks, clock], loggers, precision=str(cfg.trainer.precision),
                            enable_progress_bar=False)

    trainer.save_checkpoint = _timed(trainer.save_checkpoint, clock.add_checkpoint)  # type: ignore[method-assign]
    built = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(args.checkpoint) if args.checkpoint else None)
    fit_end = time.perf_counter()
    test: dict[str, float] = {}
    if cfg.test and not args.no_test:
        best = next((c.best_model_path for c in callbacks if getattr(c, "best_model_path", "")), None)
        s = time.perf_counter()
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        test["test_s"] = time.perf_counter() - s
        s = time.perf_counter()
        run_analyses(trainer, model, datamodule, cfg.get("analysis"))
        test["analyses_s"] = time.perf_counter() - s
    return {
        "startup": {"compose_and_hardware_s": t - t0, "build_s": built - t,
                    "fit_until_first_step_s": clock.marks.get("train_start", fit_end) - built,
                    "sanity_check_s": clock.marks.get("sanity_s", 0.0)},
        "checkpoints_outside_epochs_s": clock.marks.get("checkpoints_outside_epochs_s", 0.0),
        "fit_s": fit_end - built, "epochs": clock.epochs, "steps": clock.steps, "epoch_hooks_s": hooks, "test": test,
        "measured_from_epoch": measured_from,
    }


def summarise(raw: dict[str, Any], window: int) -> dict[str, Any]:
    """Step-time curve, steady-state medians (flush on / off) and per-epoch overheads."""
    steps = raw["steps"]
    ms = [1000 * s["seconds"] for s in steps]
    curve = [{"from_step": i, "median_ms": statistics.median(ms[i:i + window]), "max_ms": max(ms[i:i + window])}
             for i in range(0, len(ms), window)]
    measured = [s for s in steps if s["measured"]]
    out: dict[str, Any] = {"curve": curve, "epochs": raw["epochs"], "startup": raw["startup"], "test": raw["test"],
                           "epoch_hooks_s": raw["epoch_hooks_s"]}
    for flush in (True, False):
        sel = [1000 * s["seconds"] for s in measured if s["flush"] is flush]
        if sel:
            q = statistics.quantiles(sel, n=4) if len(sel) > 1 else [sel[0]] * 3
            out[f"steady_flush_{'on' if flush else 'off'}"] = {"steps": len(sel), "median_ms": statistics.median(sel),
                                                              "q1_ms": q[0], "q3_ms": q[2]}
    if "steady_flush_on" in out and "steady_flush_off" in out:
        out["flush_off_over_on"] = out["steady_flush_off"]["median_ms"] / out["steady_flush_on"]["median_ms"]
    return out


def report(summary: dict[str, Any], out: Any) -> None:
    print("\nstep-time curve (median / max ms per window of steps):", file=out)
    print("  " + "  ".join(f"{c['from_step']}:{c['median_ms']:.0f}/{c['max_ms']:.0f}" for c in summary["curve"]),
          file=out)
    for key in ("steady_flush_on", "steady_flush_off"):
        if key in summary:
            e = summary[key]
            print(f"{key}: median {e['median_ms']:.1f} ms (IQR {e['q1_ms']:.1f}-{e['q3_ms']:.1f}) over {e['steps']} "
                  "measured steps", file=out)
    if "flush_off_over_on" in summary:
        print(f"flush off / on: {summary['flush_off_over_on']:.1f}x", file=out)
    print("\nper epoch (s): wall, training steps (n, median ms), validation, checkpoints, other", file=out)
    for e in summary["epochs"]:
        print(f"  epoch {e['epoch']}: {e['wall_s']:.1f}  {e['train_steps_s']:.1f} ({e['steps']}, "
              f"{e['median_step_ms']:.1f})  {e['validation_s']:.2f}  {e['checkpoint_s']:.2f}  {e['other_s']:.2f}",
              file=out)
    print("epoch-level callback hooks, s in total: " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(summary["epoch_hooks_s"].items(), key=lambda kv: -kv[1])), file=out)
    print("start-up, s: " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in summary["startup"].items()), file=out)
    if summary["test"]:
        print("after fitting, s: " + ", ".join(f"{k[:-2]} {v:.2f}" for k, v in summary["test"].items()), file=out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m src.bench steady", description=__doc__.split("\n\n")[0])
    p.add_argument("--warm-epochs", type=int, default=1, help="epochs trained before the measured ones (default 1)")
    p.add_argument("--epochs", type=int, default=1, help="measured epochs (default 1)")
    p.add_argument("--measure-steps", type=int, default=None, help="stop this many steps into the measured epochs")
    p.add_argument("--checkpoint", type=Path, default=None, help="start from this checkpoint instead of warm epochs")
    p.add_argument("--flush-cycle", type=int, default=None, help="switch flush-to-zero off/on every K measured steps")
    p.add_argument("--flush-ab", action="store_true", help="run twice, flush_denormals=true then false, and compare")
    p.add_argument("--window", type=int, default=50, help="steps per point of the step-time curve (default 50)")
    p.add_argument("--no-test", action="store_true", help="skip the test and analyses after fitting")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m src.train")
    args = p.parse_args(argv)
    if args.warm_epochs < 0 or args.epochs < 1 or (args.flush_cycle is not None and args.flush_cycle < 1):
        p.error("--warm-epochs must be >= 0, --epochs and --flush-cycle >= 1")
    return args


def one_run(args: argparse.Namespace, overrides: list[str], out: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_steady_"))
    cfg = compose_config(overrides, workdir)
    torch.set_float32_matmul_precision(str(cfg.matmul_precision))
    setting = {"overrides": overrides, "precision": str(cfg.trainer.precision),
               "threads": torch.get_num_threads(), "flush_denormals": cfg.hardware["flush_denormals"],
               "cpu": cpu_model(), "warm_epochs": args.warm_epochs, "epochs": args.epochs,
               "measure_steps": args.measure_steps, "flush_cycle": args.flush_cycle,
               "checkpoint": str(args.checkpoint) if args.checkpoint else None, "workdir": str(workdir)}
    print("setting: " + json.dumps(setting), file=out, flush=True)
    raw = steady_run(cfg, args, t0)
    summary = summarise(raw, args.window)
    report(summary, out)
    return {"setting": setting, **summary, "step_ms": [round(1000 * s["seconds"], 3) for s in raw["steps"]]}


def compare_flush(on: dict[str, Any], off: dict[str, Any], out: Any) -> dict[str, Any]:
    """Flush off against on, window by window and epoch by epoch (same seed, same steps)."""
    windows = [{"from_step": a["from_step"], "on_ms": a["median_ms"], "off_ms": b["median_ms"],
                "ratio": b["median_ms"] / a["median_ms"]} for a, b in zip(on["curve"], off["curve"], strict=False)]
    epochs = [{"epoch": a["epoch"], "on_s": a["train_steps_s"], "off_s": b["train_steps_s"],
               "ratio": b["train_steps_s"] / a["train_steps_s"]} for a, b in zip(on["epochs"], off["epochs"],
                                                                                 strict=False)]
    n = min(len(on["step_ms"]), len(off["step_ms"]))
    per_step = [b / a for a, b in zip(on["step_ms"][:n], off["step_ms"][:n], strict=True)]
    result = {"windows": windows, "epochs": epochs, "max_step_ratio": max(per_step),
              "max_step_ms": {"on": max(on["step_ms"]), "off": max(off["step_ms"])},
              "steps_over_10x": sum(r > 10 for r in per_step), "steps": n}
    print("\nflush off / on, median step per window: " + "  ".join(
        f"{w['from_step']}:{w['ratio']:.1f}x" for w in windows), file=out)
    print("flush off / on, training time per epoch: " + "  ".join(
        f"epoch {e['epoch']}: {e['off_s']:.1f} / {e['on_s']:.1f} s = {e['ratio']:.2f}x" for e in epochs), file=out)
    print(f"slowest step: {result['max_step_ms']['off']:.0f} ms off, {result['max_step_ms']['on']:.0f} ms on; "
          f"{result['steps_over_10x']} of {n} steps > 10x slower with flush off "
          f"(worst {result['max_step_ratio']:.0f}x)", file=out)
    return result


def run(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    quiet_lightning()
    overrides = list(args.overrides)
    if not args.flush_ab:
        results = one_run(args, overrides, out)
    else:
        on = one_run(args, [*overrides, "flush_denormals=true"], out)
        off = one_run(args, [*overrides, "flush_denormals=false"], out)
        results = {"flush_on": on, "flush_off": off, "flush_off_vs_on": compare_flush(on, off, out)}
    if args.json:
        write_results(args.json, results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0
