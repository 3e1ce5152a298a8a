"""The sweep read across seeds: per configuration, mean ± std of the accuracies per epoch, written as
Custom Scalars margin charts (src/tb/seed_bands.py), checked on fabricated run records and read back
through a real TensorBoard server; and the HParams table without columns that repeat another."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as layout_metadata
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from src.tb.experiment import main as experiment_main
from src.tb.hparams import experiment_infos, repeated_keys
from src.tb.screenshots import free_port, stop_server
from src.tb.seed_bands import FOLDER, band, read_runs, seed_bands, swept_keys, write_seed_bands


def make_run(root: Path, folder: str, overrides: list[str], val: list[float], train: list[float] | None = None,
             job: int = 0, choices: dict[str, str] | None = None) -> Path:
    """A finished run as the pipeline leaves it: ``.hydra/`` and a ``metrics.json`` with a history."""
    run = root / folder
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra_cfg = {"hydra": {"job": {"num": job}, "runtime": {"choices": choices or {}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_cfg))
    train = train if train is not None else [v + 0.1 for v in val]
    history = [{"epoch": e, "step": 10 * (e + 1), "val/acc": v, "train/acc": t, "train/loss": 30.0 - e}
               for e, (v, t) in enumerate(zip(val, train, strict=True))]
    (run / "metrics.json").write_text(json.dumps({"status": "finished", "history": history}))
    return run


def make_sweep(root: Path, params: dict[str, str], task: list[str] | None = None) -> Path:
    (root / "multirun.yaml").parent.mkdir(parents=True, exist_ok=True)
    multirun = {"hydra": {"overrides": {"task": task or []}, "sweeper": {"params": params}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    return root


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """loss.m in {2, 4} x seed in {0, 1, 2}; loss.m=4 has only one seed that finished."""
    root = make_sweep(tmp_path / "sweep", {"loss.m": "2,4", "seed": "0,1,2"}, ["loss=sphereface"])
    make_run(root, "0_loss.m=2,seed=0", ["loss=sphereface", "loss.m=2", "seed=0"], [0.5, 0.8], job=0)
    make_run(root, "1_loss.m=2,seed=1", ["loss=sphereface", "loss.m=2", "seed=1"], [0.6, 0.8], job=1)
    make_run(root, "2_loss.m=2,seed=2", ["loss=sphereface", "loss.m=2", "seed=2"], [0.7, 0.8], job=2)
    make_run(root, "3_loss.m=4,seed=0", ["loss=sphereface", "loss.m=4", "seed=0"], [0.4, 0.9], job=3)
    return root


def test_band_is_mean_and_sample_std_per_epoch() -> None:
    b = band([[{"epoch": 0, "val/acc": 0.5}], [{"epoch": 0, "val/acc": 0.6}], [{"epoch": 0, "val/acc": 0.7}]],
             "val/acc")
    assert b.epochs == [0] and b.seeds == [3]
    assert b.mean[0] == pytest.approx(0.6, abs=1e-12)
    assert b.lower[0] == pytest.approx(0.5, abs=1e-12) and b.upper[0] == pytest.approx(0.7, abs=1e-12)  # std 0.1 (n-1)
    two = band([[{"epoch": 3, "val/acc": 0.90}], [{"epoch": 3, "val/acc": 0.94}]], "val/acc")
    assert two.mean == pytest.approx([0.92]) and two.upper[0] - two.mean[0] == pytest.approx(0.04 / math.sqrt(2))


def test_one_seed_gives_a_zero_width_band() -> None:
    b = band([[{"epoch": 0, "val/acc": 0.4}, {"epoch": 1, "val/acc": 0.9}]], "val/acc")
    assert b.mean == b.lower == b.upper == [0.4, 0.9] and b.seeds == [1, 1]


def test_an_epoch_covers_the_seeds_that_reached_it_and_skips_non_finite_values() -> None:
    short = [{"epoch": 0, "val/acc": 0.5}]
    diverged = [{"epoch": 0, "val/acc": 0.7}, {"epoch": 1, "val/acc": math.nan}]
    full = [{"epoch": 0, "val/acc": 0.6}, {"epoch": 1, "val/acc": 0.8}, {"epoch": 2, "train/acc": 1.0}]
    b = band([short, diverged, full], "val/acc")
    assert b.epochs == [0, 1] and b.seeds == [3, 1] and b.mean == pytest.approx([0.6, 0.8])


def test_configurations_are_named_by_the_swept_keys_without_the_seed(sweep: Path) -> None:
    runs = read_runs(sweep)
    assert [r.folder.name for r in runs][0] == "0_loss.m=2,seed=0" and len(runs) == 4
    assert swept_keys(sweep, runs) == ["loss.m"]
    bands = seed_bands(sweep)
    assert list(bands) == ["loss.m=2", "loss.m=4"]  # in job order
    m2, m4 = bands["loss.m=2"]["val/acc"], bands["loss.m=4"]["val/acc"]
    assert m2.seeds == [3, 3] and m2.mean == pytest.approx([0.6, 0.8])
    assert m2.lower == pytest.approx([0.5, 0.8]) and m2.upper == pytest.approx([0.7, 0.8])  # 0.8 x 3: no spread
    assert m4.mean == m4.lower == m4.upper == [0.4, 0.9]
    assert bands["loss.m=2"]["train/acc"].mean == pytest.approx([0.7, 0.9])
    assert set(bands["loss.m=2"]) == {"val/acc", "train/acc"}  # train/loss is never aggregated


def test_without_multirun_yaml_the_differing_overrides_name_configurations(tmp_path: Path) -> None:
    root = tmp_path / "singles"
    # Single runs: one overrode the loss, the other took the default (its group choice names it).
    make_run(root, "a", ["loss=arcface", "seed=1", "data.seed=1"], [0.5], job=0)
    make_run(root, "b", ["seed=2", "data.seed=2"], [0.6], job=0, choices={"loss": "softmax"})
    runs = read_runs(root)
    assert swept_keys(root, runs) == ["loss"]  # seed and data.seed are seeds
    assert list(seed_bands(root)) == ["loss=arcface", "loss=softmax"]
    only_seeds = tmp_path / "seeds_only"
    make_sweep(only_seeds, {"seed": "0,1"})
    make_run(only_seeds, "0_seed=0", ["seed=0"], [0.5], job=0)
    make_run(only_seeds, "1_seed=1", ["seed=1"], [0.7], job=1)
    assert list(seed_bands(only_seeds)) == ["all"]


def test_written_event_files_hold_the_bands_and_the_layout(sweep: Path) -> None:
    (sweep / FOLDER / "loss.m=9").mkdir(parents=True)  # an earlier write's folder, now gone
    (sweep / FOLDER / "loss.m=9" / "events.out.tfevents.0.old.0").write_bytes(b"")
    (sweep / FOLDER / "notes.txt").write_text("kept")  # only event files are ours to remove
    assert write_seed_bands(sweep) == sweep / FOLDER
    assert sorted(p.name for p in (sweep / FOLDER).iterdir() if p.is_dir()) == ["loss.m=2", "loss.m=4"]
    assert (sweep / FOLDER / "notes.txt").read_text() == "kept"
    acc = EventAccumulator(str(sweep / FOLDER / "loss.m=2"), size_guidance={"scalars": 0})
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == sorted(f"seeds/{m}/{s}" for m in ("val_acc", "train_acc")
                                                   for s in ("mean", "lower", "upper"))
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("seeds/val_acc/lower")] == [(0, 0.5), (1, 0.8)]
    top = EventAccumulator(str(sweep / FOLDER), size_guidance={"tensors": 0})
    top.Reload()
    (event,) = top.Tensors(layout_metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout.FromString(tensor_util.make_ndarray(event.tensor_proto).item())
    assert [c.title.split(":")[0] for c in layout.category] == ["val/acc", "train/acc"]  # one chart per metric
    charts = [chart for category in layout.category for chart in category.chart]
    assert len(charts) == 2 and charts[0].margin.series[0].value == "seeds/val_acc/mean"
    assert charts[0].margin.series[0].upper == "seeds/val_acc/upper"
    assert write_seed_bands(sweep) == sweep / FOLDER  # a rewrite replaces, never adds
    assert len(list((sweep / FOLDER / "loss.m=2").glob("events.out.tfevents.*"))) == 1


def test_no_history_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({"status": "missing"}))
    assert write_seed_bands(tmp_path) is None and not (tmp_path / FOLDER).exists()


def test_experiment_command_writes_the_bands(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment_main([str(sweep)])
    out = capsys.readouterr().out
    assert str(sweep / FOLDER) in out and (sweep / FOLDER / "loss.m=4").is_dir()


def test_the_multirun_callback_writes_the_bands(sweep: Path) -> None:
    from omegaconf import OmegaConf

    from src.tb.experiment import SweepExperiment

    SweepExperiment().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert sorted(p.name for p in (sweep / FOLDER).iterdir() if p.is_dir()) == ["loss.m=2", "loss.m=4"]


def test_hparams_drops_a_column_that_repeats_another() -> None:
    runs = [{"seed": s, "data.seed": s, "name": c, "study_config": c, "loss": c.split("_")[0],
             "data.split_seed": 0, "trainer.devices": 0, "backbone": "seed_cnn"}
            for s in (0, 1) for c in ("softmax", "arcface_m2")]
    assert repeated_keys(runs, sorted(runs[0])) == {"data.seed", "name"}  # equal constants are chance
    names = [i.name for i in experiment_infos(runs)]
    assert names == ["loss", "seed", "study_config", "backbone"]
    # True and 1 are different values: no repeat.
    assert repeated_keys([{"a": True, "b": 1}, {"a": False, "b": 0}], ["a", "b"]) == set()


# -- a real TensorBoard server over a tiny fabricated sweep ----------------------------------------


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def server(sweep: Path) -> Any:
    write_seed_bands(sweep)
    with SummaryWriter(str(sweep / "0_loss.m=2,seed=0")) as writer:  # a per-seed run's own curve
        writer.add_scalar("val/acc", 0.5, 0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wanted = {FOLDER, f"{FOLDER}/loss.m=2", f"{FOLDER}/loss.m=4", "0_loss.m=2,seed=0"}
    try:
        deadline = time.monotonic() + 60
        while True:  # up, and done reading the three aggregate runs
            try:
                if wanted <= set(_get(base, "/data/runs")) and _get(base, "/data/plugin/custom_scalars/layout"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert proc.poll() is None, f"tensorboard exited: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "tensorboard did not serve the bands within 60 s"
            time.sleep(0.3)
        yield base
    finally:
        stop_server(proc)


def test_tensorboard_serves_one_margin_chart_per_metric_and_a_band_per_configuration(server: str) -> None:
    assert _get(server, "/data/plugins_listing")["custom_scalars"]["enabled"]
    categories = _get(server, "/data/plugin/custom_scalars/layout")["category"]
    charts = {cat["title"].split(":")[0]: chart["margin"]["series"] for cat in categories for chart in cat["chart"]}
    assert list(charts) == ["val/acc", "train/acc"]  # one margin chart per metric, in this order
    series = charts["val/acc"][0]
    assert (series["value"], series["lower"], series["upper"]) == (
        "seeds/val_acc/mean", "seeds/val_acc/lower", "seeds/val_acc/upper")
    # As the margin chart card asks: each run, its three tags in one escaped regex.
    regex = "|".join(f"({re.escape(t)})" for t in (series["value"], series["lower"], series["upper"]))
    got = {}
    for config in ("loss.m=2", "loss.m=4"):
        query = urllib.parse.urlencode({"run": f"{FOLDER}/{config}", "tag": regex})
        reply = _get(server, f"/data/plugin/custom_scalars/scalars?{query}")
        assert reply["regex_valid"]
        got[config] = {tag.rsplit("/", 1)[1]: [(step, round(v, 6)) for _, step, v in points]
                       for tag, points in reply["tag_to_events"].items()}
    assert got["loss.m=2"] == {"mean": [(0, 0.6), (1, 0.8)], "lower": [(0, 0.5), (1, 0.8)],
                               "upper": [(0, 0.7), (1, 0.8)]}
    assert got["loss.m=4"]["lower"] == got["loss.m=4"]["mean"] == got["loss.m=4"]["upper"] == [(0, 0.4), (1, 0.9)]
    # A per-seed run holds none of these tags: it draws no stray band.
    query = urllib.parse.urlencode({"run": "0_loss.m=2,seed=0", "tag": regex})
    assert _get(server, f"/data/plugin/custom_scalars/scalars?{query}")["tag_to_events"] == {}
