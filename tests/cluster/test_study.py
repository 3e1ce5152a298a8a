"""The study on a real SLURM scheduler: its grid (here three configurations, one seed) in its fixed
folder, submitted, cancelled part-way (``scancel``, as a user or an administrator would), then
submitted again with the same command: the finished run is kept byte for byte and not retrained,
the cancelled one resumes from its checkpoint, the rest run, and the sweep ends with exit 0."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster.helpers import (
    cancel,
    finish_sweep,
    job_logs,
    record,
    slurm_env,
    start_sweep,
    submitted_jobs,
    sweep_command,
    wait_for_file,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # real jobs on a scheduler: make test-all

RUNS = ["arcface_m0.5_seed0", "softmax_seed0", "sphereface_m2_seed0"]


def test_cancelled_study_finishes_when_submitted_again(synthetic_root: Path, tmp_path: Path) -> None:
    sweep, marker = tmp_path / "study", tmp_path / "held"
    cmd = sweep_command(
        sweep, "experiment=study", "seed=0", "study_config=softmax,sphereface_m2,arcface_m0.5",
        "trainer.max_epochs=2", "trainer.limit_train_batches=3", "hydra.launcher.array_parallelism=2",
        # The second job holds after step 2 of its first run: the test cancels the study there.
        "+callbacks.hold._target_=tests.cluster.helpers.HoldForScheduler", f"+callbacks.hold.marker={marker}",
        "+callbacks.hold.task=1", "+callbacks.hold.at=step", "+callbacks.hold.step=2",
        data=synthetic_root,
    )  # fmt: skip
    done, cut = sweep / "softmax_seed0", sweep / "sphereface_m2_seed0"
    t0 = time.monotonic()
    first = start_sweep(cmd)
    wait_for_file(marker, first, timeout=240)
    deadline = time.monotonic() + 180
    while not ((done / "metrics.json").exists() and record(done)["status"] == "finished"):
        assert time.monotonic() < deadline, "the first job did not finish"
        time.sleep(0.5)
    array = marker.read_text().split("_")[0]
    subprocess.run(["scancel", array], env=slurm_env(), check=True, timeout=30)  # the whole study
    code, log = finish_sweep(first, timeout=180)
    assert code == 1, log[-3000:]  # cancelled jobs: the sweep did not finish
    assert record(done)["status"] == "finished"
    assert record(cut)["status"] == "interrupted" and (cut / "checkpoints" / "last.ckpt").exists()
    kept = {p: p.read_bytes() for p in (done / "metrics.json", *(done / "checkpoints").glob("*.ckpt"))}

    code, log = finish_sweep(start_sweep(cmd), timeout=300)  # the same command again
    cancel(submitted_jobs(log))
    assert code == 0, log[-3000:] + job_logs(sweep)
    assert {p: p.read_bytes() for p in kept} == kept  # the finished run was not retrained or rewritten
    task_logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.out"))
    assert "already finished" in task_logs
    resumed = record(cut)
    assert resumed["status"] == "finished" and len(resumed["segments"]) == 2
    assert resumed["global_step"] == 6 and [row["epoch"] for row in resumed["history"]] == [0, 1]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"] == {"finished": 3}
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))) == RUNS
    print(f"study: {time.monotonic() - t0:.0f} s")
