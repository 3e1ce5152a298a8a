"""A finished tiny sweep read back through a real TensorBoard server's HTTP data API, as the
dashboards read it: run names, Time Series tags, the HParams experiment and session groups."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from src.tb.screenshots import find_browser, stop_server
from src.tb.screenshots import main as screenshots_main
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.slow  # a real sweep read by a real TensorBoard server

QUICK = [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=3", "analysis.geometry=false"]
CURVES = {"loss_own_scale/train", "loss_own_scale/train_epoch", "loss_own_scale/val", "train/acc", "train/lr",
          "val/acc", "val/acc_macro", "val/acc_best"}
FINAL = {"test/acc", "test/acc_macro"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def sweep(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two jobs (ArcFace, SphereFace: different loss keys) and one constant extra override."""
    root = tmp_path_factory.mktemp("tb_sweep") / "sweep"
    cmd = [sys.executable, "-m", "src.train", "-m", "loss=arcface,sphereface", "++data.train_subset=200",
           f"data.root={synthetic_root}", *QUICK, f"hydra.sweep.dir={root}"]
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def server(sweep: Path) -> Any:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false", "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # up, and done loading both jobs (TensorBoard loads in the background)
            try:
                if {"0_loss=arcface", "1_loss=sphereface"} <= set(request(base, "/data/runs")):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert proc.poll() is None, f"tensorboard exited: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "tensorboard did not serve the sweep within 60 s"
            time.sleep(0.5)
        yield base
    finally:
        stop_server(proc)


def test_job_folders_and_run_names_say_what_varies(sweep: Path, server: str) -> None:
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert jobs == ["0_loss=arcface", "1_loss=sphereface"]  # the constant train_subset is left out
    runs = request(server, "/data/runs")
    assert {"0_loss=arcface", "1_loss=sphereface"} <= set(runs)
    assert not [r for r in runs if r.endswith("/tb") or "train_subset" in r]
    assert not list(sweep.rglob("hparams.yaml"))


def test_the_multirun_end_wrote_the_seed_bands(sweep: Path, server: str) -> None:
    # One seed per loss here: two zero-width bands, one Custom Scalars run each (src/tb/seed_bands.py).
    runs = request(server, "/data/runs")
    assert {"_seeds", "_seeds/loss=arcface", "_seeds/loss=sphereface"} <= set(runs)
    assert request(server, "/data/plugin/custom_scalars/layout")["category"]


def test_time_series_tags(server: str) -> None:
    tags = request(server, "/data/plugin/scalars/tags")
    for run in ("0_loss=arcface", "1_loss=sphereface"):
        run_tags = set(tags[run])
        missing = (CURVES | FINAL) - run_tags
        assert not missing, missing
        assert "epoch" not in run_tags
        assert not [t for t in run_tags if t.startswith(("lr-", "hparams/"))]
    images = request(server, "/data/plugin/images/tags")
    assert {"val/confusion", "test/confusion"} <= set(images["0_loss=arcface"])
    text = request(server, "/data/plugin/text/tags")
    assert [t for t in text["1_loss=sphereface"] if t.startswith("summary")]  # the run in words


def test_confusion_figures_share_the_validation_steps(server: str) -> None:
    run = urllib.parse.quote("0_loss=arcface")
    acc = request(server, f"/data/plugin/scalars/scalars?run={run}&tag=val/acc")
    figures = request(server, f"/data/plugin/images/images?run={run}&tag=val/confusion")
    assert [row[1] for row in acc] == [fig["step"] for fig in figures] and len(figures) == 2
    with urllib.request.urlopen(f"{server}/data/plugin/images/individualImage?{figures[-1]['query']}") as resp:
        png = resp.read()
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's size fields
    assert 350 <= width <= 450 and height <= width  # drawn near TensorBoard's card width, not shrunk


def test_hparams_experiment_covers_every_run_and_leads_with_what_differs(server: str) -> None:
    exp = request(server, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = exp["hparamInfos"]
    names = [i["name"] for i in infos]
    differs = [i["name"] for i in infos if i.get("differs")]
    assert names[: len(differs)] == differs  # the differing keys first: the default columns
    assert {"loss", "loss.m"} <= set(differs)
    # Headline constants, and the keys only some runs have, listed but not leading.
    assert {"seed", "backbone", "loss.convention", "loss.anneal"} <= set(names) - set(differs)
    assert not [n for n in names if "_target_" in n or n in ("data.train_subset", "analysis.geometry", "optimizer")]
    types = {i["name"]: i["type"] for i in infos}
    assert types["loss"] == "DATA_TYPE_STRING" and types["loss.anneal"] == "DATA_TYPE_BOOL"
    assert types["seed"] == "DATA_TYPE_FLOAT64"
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert metrics[:3] == ["val/acc_best", "test/acc", "test/acc_macro"]
    assert "test/acc_leaky" in metrics[:5]  # the leakage audit is a default column


def test_hparams_session_groups_hold_typed_values_and_the_real_metrics(sweep: Path, server: str) -> None:
    body = {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN"], "colParams": [],
            "startIndex": 0, "sliceSize": 100}
    groups = {g["name"]: g for g in request(server, "/data/plugin/hparams/session_groups", body)["sessionGroups"]}
    assert set(groups) == {"0_loss=arcface", "1_loss=sphereface"}
    arc, sphere = groups["0_loss=arcface"]["hparams"], groups["1_loss=sphereface"]["hparams"]
    assert arc["loss"] == "arcface" and arc["loss.m"] == 0.5 and arc["loss.convention"] == "monotone"
    assert sphere["loss.anneal"] is True and sphere["loss.normalize_features"] is False
    assert sphere["loss.m"] == 4 and sphere["seed"] == 0 and sphere["data.train_subset"] == 200
    assert "loss.convention" not in sphere and not [k for k in arc if "_target_" in k]
    for name, group in groups.items():
        record = json.loads((sweep / name / "metrics.json").read_text())
        values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        assert values["val/acc_best"] == pytest.approx(record["val_acc_best"], abs=1e-6)
        assert values["test/acc"] == pytest.approx(record["test_acc"], abs=1e-6)
        assert values["test/acc_macro"] == pytest.approx(record["test_acc_macro"], abs=1e-6)


@pytest.mark.skipif(find_browser() is None, reason="Chromium not installed (apt-get install chromium)")
def test_screenshot_script_shoots_a_tab(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "shots"
    code = screenshots_main([str(sweep), "--out", str(out), "--tabs", "hparams", "--wait", "4", "--size", "1200x700"])
    png = (out / "hparams.png").read_bytes()
    assert code == 0 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1200, 700) and len(png) > 20_000  # a drawn page, not a blank one


def test_screenshot_script_says_when_chromium_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert screenshots_main([str(tmp_path), "--browser", "no-such-browser-here"]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err
