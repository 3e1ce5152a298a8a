"""Speed options ranked against each other with bare training loops (``python -m src.bench
--compare OVERRIDES ...``); see ``compare``."""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from src.bench.common import compose_config
from src.bench.harness import Bench, Steps
from src.utils.hardware import flush_denormals


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
