"""A real Hydra multirun in a subprocess, exactly as a user types it; single runs through the same
command line in this process (``train_in_process``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TINY, train_in_process

QUICK = [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def train_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "src.train", *overrides]


def run_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}


def test_multirun_sweeps_margin_with_one_folder_per_job(synthetic_root: Path, tmp_path: Path) -> None:
    sweep_root = tmp_path / "sweeps"
    cmd = train_command(
        "-m", "loss=sphereface", "loss.m=2,4", f"data.root={synthetic_root}", *QUICK,
        f"hydra.sweep.dir={sweep_root}/${{now:%H-%M-%S}}_${{run_uid:}}",
    )
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = list(sweep_root.iterdir())
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    # Named by what the sweep varies; the overrides every job shares are in the sweep's multirun.yaml.
    assert [p.name for p in jobs] == ["0_loss.m=2", "1_loss.m=4"]
    for job, m in zip(jobs, (2, 4), strict=True):
        record = json.loads((job / "metrics.json").read_text())
        assert record["status"] == "finished" and record["loss_params"]["m"] == m
        assert "test_acc" in record
        assert (job / "config_resolved.yaml").exists()
        assert list(job.glob("events.out.tfevents.*"))


def test_single_run_folder_named_by_overrides(synthetic_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # Run from an empty folder so the default outputs/runs/... location is used as is.
    monkeypatch.chdir(tmp_path)
    code = train_in_process(["loss=arcface", "loss.m=0.5", f"data.root={synthetic_root}", *QUICK, "test=false"],
                            monkeypatch)
    runs = tmp_path / "outputs" / "runs"
    assert code == 0, capsys.readouterr().err[-3000:]
    (run_dir,) = list(runs.iterdir())
    assert "loss-arcface" in run_dir.name and "loss.m-0.5" in run_dir.name  # one shell word: no = or ,
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"


def test_default_folders_are_unique_per_process() -> None:
    code = "from src.utils.resolvers import _RUN_UID; print(_RUN_UID)"
    ids = {subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True).stdout
           for _ in range(3)}
    assert len(ids) == 3
    hydra_conf = (REPO / "conf" / "hydra" / "default.yaml").read_text()
    assert "${run_uid:}" in hydra_conf.split("sweep:")[1] and "${run_uid:}" in hydra_conf.split("sweep:")[0]


def test_folder_suffix_is_one_short_safe_name() -> None:
    from src.utils.resolvers import MAX_NAME, folder_suffix

    assert folder_suffix("") == ""
    assert folder_suffix("experiment=study/softmax,seed=1") == "_experiment=study-softmax,seed=1"
    long_a, long_b = "x=1," * 100 + "a", "x=1," * 100 + "b"
    assert len(folder_suffix(long_a)) <= MAX_NAME + 1 and folder_suffix(long_a) != folder_suffix(long_b)


def test_missing_dataset_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "nowhere").mkdir()  # a folder without the files (a missing folder is a config error, exit 2)
    code = train_in_process(["data.name=mnist", f"data.root={tmp_path / 'nowhere'}", "data.download=false",
                             f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch)  # fmt: skip
    stderr = capsys.readouterr().err
    assert code == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert "mnist files not found" in line and str(tmp_path / "nowhere") in line and "download" in line
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"
