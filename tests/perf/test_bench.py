"""``python -m src.bench`` on a tiny synthetic set: both modes run and report paired ratios."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch

from src import bench

TINY = ["--backbone", "small3d", "--batch-size", "16", "--steps", "2", "--warmup", "1", "--repeats", "1",
        "--predict-steps", "1", "--predict-warmup", "1"]


def tiny_overrides(root: Path) -> list[str]:
    return [f"data.root={root}", "data.download=false", "data.val_size=100", "data.eval_batch_size=32", "threads=1"]


def test_interleaved_bench_reports_training_and_inference_ratios(synthetic_root: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    args = bench.parse_args([*TINY, "--json", str(tmp_path / "r.json"), *tiny_overrides(synthetic_root)])
    results = bench.run(args, out)
    for part in ("train", "predict"):
        ratio = results[part]["framework"]["median_ratio"]
        assert math.isfinite(ratio) and ratio > 0
        assert results[part]["bare"]["median_ips"] > 0
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["setting"]["backbone"] == "small3d" and saved["train_repeats_done"] == 1
    assert "ratio = framework / bare" in out.getvalue()


def test_alternating_mode_with_ablations(synthetic_root: Path, tmp_path: Path, monkeypatch) -> None:
    flags = ["--mode", "alternating", "--ablate", "--no-predict"]
    args = bench.parse_args([*TINY, *flags, *tiny_overrides(synthetic_root)])
    monkeypatch.chdir(tmp_path)  # the no-callback variant once left checkpoints/ in the working directory
    results = bench.run(args, io.StringIO())
    assert not any(tmp_path.iterdir())
    assert set(results["train"]) == {"framework", "bare", "framework-min", "bare-min", "framework-nocb",
                                     "bare-nocb"}
    assert all(math.isfinite(results["train"][v]["median_ratio"]) for v in ("framework", *bench.ABLATIONS))
    assert "predict" not in results


def test_bare_side_sees_the_frameworks_first_epoch(synthetic_root: Path, tmp_path: Path) -> None:
    cfg = bench.compose_config(["backbone=small3d", "data.batch_size=16", *tiny_overrides(synthetic_root)], tmp_path)
    b = bench.Bench(cfg, "cpu", steps=2, warmup=1, predict_steps=1, predict_warmup=1, workdir=tmp_path)
    dm = b.datamodule
    dm.trainer = None  # the datamodule's own batches for epoch 0
    ours = [y for _, y in b.train_batches()]
    theirs = [y for _, y in dm.train_dataloader()]
    assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True))


def test_precision_maps_to_the_bare_loops_autocast() -> None:
    context, scaler = bench.autocast_for("bf16-mixed", "cpu")
    with context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not scaler
    assert bench.autocast_for("32-true", "cpu")[1] is False
    with pytest.raises(SystemExit, match="16-mixed needs CUDA"):
        bench.autocast_for("16-mixed", "cpu")


def test_summary_ratio_is_median_over_repeats_of_paired_medians() -> None:
    def steps(seconds: list[float]) -> bench.Steps:
        return bench.Steps(seconds, [10] * len(seconds))

    repeats = [
        {"framework": steps([1.0, 1.0, 9.0]), "bare": steps([0.5, 0.5, 0.5])},  # one preempted step
        {"framework": steps([2.0, 2.0, 2.0]), "bare": steps([2.0, 2.0, 2.0])},
        {"framework": steps([1.0, 1.0, 1.0]), "bare": steps([1.1, 1.1, 1.1])},
    ]
    s = bench.summarise(repeats)
    assert s["framework"]["ratios"] == pytest.approx([0.5, 1.0, 1.1])
    assert s["framework"]["median_ratio"] == pytest.approx(1.0)
    assert s["bare"]["ips"] == pytest.approx([20.0, 5.0, 10 / 1.1])
    assert s["bare"]["median_ips"] == pytest.approx(10 / 1.1)


def test_steady_run_times_steps_epochs_and_switches_flush(synthetic_root: Path, tmp_path: Path) -> None:
    from src.bench import steady

    overrides = ["backbone=small3d", "data.batch_size=32", *tiny_overrides(synthetic_root), "trainer.precision=32-true"]
    args = steady.parse_args(["--warm-epochs", "1", "--epochs", "1", "--measure-steps", "3", "--flush-cycle", "1",
                              "--window", "4", "--json", str(tmp_path / "s.json"), *overrides])  # fmt: skip
    out = io.StringIO()
    r = steady.run(args, out)
    assert [e["epoch"] for e in r["epochs"]] == [0, 1] and r["epochs"][0]["steps"] == 10  # 300 images / 32
    assert r["epochs"][1]["steps"] == 3  # stopped 3 steps into the measured epoch
    assert all(e["validation_s"] > 0 and e["wall_s"] >= e["train_steps_s"] for e in r["epochs"])
    # on, off, on: one step each, measured from the second epoch only
    assert (r["steady_flush_on"]["steps"], r["steady_flush_off"]["steps"]) == (2, 1)
    assert r["test"]["test_s"] > 0 and r["startup"]["build_s"] > 0 and len(r["step_ms"]) == 13
    assert "ConfusionMatrixLogger.on_validation_epoch_end" in r["epoch_hooks_s"]
    assert json.loads((tmp_path / "s.json").read_text())["setting"]["flush_cycle"] == 1
    assert "flush off / on" in out.getvalue()
    from src.utils import hardware

    hardware.flush_denormals(True)


def test_compare_runs_flush_off_beside_flush_on_past_one_epoch(synthetic_root: Path) -> None:
    args = bench.parse_args([*TINY, "--steps", "9", "--warmup", "1", "--window", "3", "--no-predict",
                             "--compare", "flush_denormals=false", *tiny_overrides(synthetic_root)])  # fmt: skip
    results = bench.run(args, io.StringIO())["compare"]
    off = results["flush_denormals=false"]
    assert len(off["curve_ms"][0]) == 3 and all(math.isfinite(r) and r > 0 for r in off["total_ratios"])
    assert results["base"]["total_ratios"] == [1.0]


def test_steady_keeps_the_planned_schedule_and_refuses_epochs_past_it(synthetic_root: Path) -> None:
    from src.bench import steady

    args = steady.parse_args(["--warm-epochs", "2", "--epochs", "1", "trainer.max_epochs=2",
                              *tiny_overrides(synthetic_root)])  # fmt: skip
    with pytest.raises(SystemExit, match=r"past trainer.max_epochs=2"):
        steady.run(args, io.StringIO())
