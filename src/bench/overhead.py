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

This module is the command line; the loops compared are ``src.bench.loops``, the harness and its
statistics ``src.bench.harness``, and ``--compare``'s ranking of speed options ``src.bench.options``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from src.bench.common import compose_config, quiet_lightning, resolve_device, write_results
from src.bench.harness import ABLATIONS, Bench, Steps, decompose, print_table, profile, summarise
from src.bench.options import compare
from src.utils.hardware import cpu_model


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
