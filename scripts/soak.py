"""Soak: N cycles of train -> a random signal (SIGINT, SIGTERM, SIGKILL) at a random moment -> resume.

    .venv/bin/python scripts/soak.py --cycles 50 --seed 27 --out /tmp/soak

Tiny synthetic data, deterministic mode. Each cycle starts (or resumes, with the command the run
folder asks for: ``python -m src.train --resume <folder>``) the run and signals it after a random
delay: a share of the signals (``--startup-share``) in the start-up's first ``--max-delay``
seconds, the rest uniformly over an uninterrupted run's span counted from the moment its record
opens (training, validation, checkpoints, the test, the analyses). Once the cycles are spent the
run is resumed to its end and compared with an uninterrupted run of the same config: status,
steps, epochs, a val/acc for every epoch, one segment per start, and the figures (history, best
validation, test accuracy), which must be equal when every interruption landed at an epoch
boundary or was a SIGKILL (a SIGTERM / Ctrl-C mid-epoch resumes mid-epoch: valid, not
bit-identical, docs/reliability.md). Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
TINY = ["data.val_size=100", "data.batch_size=32", "data.eval_batch_size=25", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0", "trainer.accelerator=cpu",
        "trainer.precision=32-true", "threads=1", "trainer.deterministic=true", "analysis.geometry=false",
        "logger.tensorboard=null", "callbacks.learning_rate=null"]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "src.train", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def _wait_for_segment(proc: subprocess.Popen, folder: Path, segments: int) -> None:
    """Until the start has opened its record (one more segment); raises TimeoutExpired only if
    the process is still alive then, returns when it ended first (the caller's wait sees that)."""
    while proc.poll() is None and len(_record(folder).get("segments", [])) <= segments:
        time.sleep(0.02)


def _record(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--out", type=Path, default=Path("/tmp/soak"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-delay", type=float, default=4.0,
                        help="longest wait before a signal aimed at the start-up (s)")
    parser.add_argument("--startup-share", type=float, default=0.2,
                        help="share of the signals aimed at the start-up; the rest land in the run, uniformly "
                             "over an uninterrupted run's span from its record's opening")
    opts = parser.parse_args()
    from tests.synthetic import make_synthetic_dataset

    rng = random.Random(opts.seed)
    opts.out.mkdir(parents=True, exist_ok=True)
    data = opts.out / "data"
    if not data.is_dir():
        make_synthetic_dataset(data, n_train=400, n_test=120, seed=0)
    overrides = [f"data.root={data}", *TINY, f"trainer.max_epochs={opts.epochs}", "trainer.limit_train_batches=3"]
    reference = opts.out / f"reference_seed{opts.seed}"
    if _record(reference).get("status") != "finished":
        subprocess.run([sys.executable, "-m", "src.train", *overrides, f"hydra.run.dir={reference}"], cwd=REPO,
                       env=_env(), check=True, capture_output=True)  # fmt: skip
    want = _record(reference)
    run_seconds = float(want.get("wall_time_s") or 10.0)  # record opened -> finished, uninterrupted
    injected: dict[str, int] = {s: 0 for s in SIGNALS}
    ended_before = cycle = 0
    places = ("in_the_run", "before_the_run_began")
    landed: dict[str, dict[str, int]] = {where: {s: 0 for s in SIGNALS} for where in places}
    unclean: list[dict] = []  # exits other than 0, 130, 143 and SIGKILL's
    runs: list[dict] = []
    while cycle < opts.cycles:  # one run after another, each interrupted until it finishes
        folder, starts = opts.out / f"run_seed{opts.seed}_{len(runs)}", 0
        while _record(folder).get("status") != "finished":
            first = not (folder / "config_resolved.yaml").exists()  # killed before its run started: start again
            proc = _start([*overrides, f"hydra.run.dir={folder}"] if first else ["--resume", str(folder)])
            starts += 1
            if cycle >= opts.cycles:  # the cycles are spent: this resume runs to the end
                proc.wait(timeout=1200)
            else:
                cycle += 1
                name = rng.choice(SIGNALS)
                segments = len(_record(folder).get("segments", []))
                try:
                    if rng.random() < opts.startup_share:  # aimed at the start-up (imports, checks)
                        proc.wait(timeout=rng.uniform(0.2, opts.max_delay))
                    else:  # aimed at the run: from the moment its record opens, anywhere in its span
                        _wait_for_segment(proc, folder, segments)
                        proc.wait(timeout=rng.uniform(0.0, run_seconds))
                    ended_before += 1  # the run finished before its signal
                except subprocess.TimeoutExpired:
                    proc.send_signal(getattr(signal, name))
                    injected[name] += 1
                    proc.wait(timeout=600)
                    # Where it landed: a start that added a segment had begun its run (its record
                    # opened), one that did not was still in Python's imports or the config checks.
                    began = len(_record(folder).get("segments", [])) > segments
                    landed["in_the_run" if began else "before_the_run_began"][name] += 1
            if proc.returncode not in (0, 130, 143, -9):  # e.g. Ctrl-C inside Python's imports: a traceback
                lines = [line for line in proc.stderr.read().splitlines() if line.strip()]
                unclean.append({"cycle": cycle, "exit": proc.returncode, "last_line": lines[-2:] if lines else []})
                if len(unclean) > opts.cycles:  # the run cannot go on: lost
                    break
        runs.append(_checks(_record(folder), want, starts, opts.epochs))
    survived = sum(all(r[k] for k in ("finished", "steps", "val_acc_every_epoch", "segments")) for r in runs)
    summary = {"seed": opts.seed, "cycles": opts.cycles, "runs": len(runs), "signals_injected": injected,
               "landed": landed, "ended_before_its_signal": ended_before, "runs_survived": survived,
               "runs_equal_to_uninterrupted": sum(r["history_equal"] and r["figures_equal"] for r in runs),
               "runs_lost": len(runs) - survived, "unclean_exits": unclean, "per_run": runs}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0 if survived == len(runs) else 1


def _checks(got: dict, want: dict, starts: int, epochs: int) -> dict:
    keys = ("epoch", "step", "val/acc", "val/loss", "train/loss")
    return {
        "finished": got.get("status") == "finished",
        "steps": got.get("global_step") == want.get("global_step"),
        "epochs": got.get("epochs") == want.get("epochs"),
        "val_acc_every_epoch": [r.get("epoch") for r in got.get("history", []) if "val/acc" in r]
        == list(range(epochs)),
        # a start stopped before its run began (in Python's imports) leaves no segment: nothing ran
        "segments": 1 <= len(got.get("segments", [])) <= starts,
        "history_equal": [{k: r.get(k) for k in keys} for r in got.get("history", [])]
        == [{k: r.get(k) for k in keys} for r in want.get("history", [])],
        "figures_equal": all(got.get(k) == want.get(k) for k in ("val_acc_best", "test_acc")),
        "starts": starts,
    }


if __name__ == "__main__":
    sys.exit(main())
