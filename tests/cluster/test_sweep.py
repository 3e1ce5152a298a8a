"""A margin sweep on a real SLURM scheduler (hydra/launcher=slurm), beside the same sweep under the
local launcher: the same folders, records, TensorBoard events, HParams record and summary; and one
of its jobs preempted part-way (``scontrol requeue``), which resumes from its last.ckpt and ends
with the step count and weights of the uninterrupted local run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.cluster.helpers import (
    cancel,
    finish_sweep,
    job_logs,
    record,
    scontrol,
    start_sweep,
    submitted_jobs,
    sweep_command,
    wait_for_file,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # real jobs on a scheduler: make test-all

GRID = ["loss=sphereface", "loss.m=2,4", "resume=true", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        "trainer.deterministic=true"]  # fmt: skip
JOBS = ["0_loss.m=2", "1_loss.m=4"]


@pytest.fixture(scope="module")
def sweeps(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cluster_sweep")
    marker = root / "held"
    # Job 0 holds at the end of its first epoch (first run only); the test then requeues it.
    hold = ["+callbacks.hold._target_=tests.cluster.helpers.HoldForScheduler", f"+callbacks.hold.marker={marker}",
            "+callbacks.hold.task=0"]  # fmt: skip
    slurm_cmd = sweep_command(root / "slurm", *GRID, *hold, data=synthetic_root)
    local_cmd = [a for a in sweep_command(root / "local", *GRID, *hold, data=synthetic_root)
                 if not a.startswith("hydra.launcher.") and a != "hydra/launcher=slurm"]  # fmt: skip
    t0 = time.monotonic()
    slurm = start_sweep(slurm_cmd)
    local = start_sweep(local_cmd)  # side by side; the hold never applies outside SLURM
    wait_for_file(marker, slurm, timeout=240)
    job = marker.read_text().strip()
    scontrol("requeue", job)  # preemption: SIGTERM now, the job back in the queue
    requeued_at = time.monotonic() - t0
    try:
        local_code, local_log = finish_sweep(local, timeout=300)
        slurm_code, slurm_log = finish_sweep(slurm, timeout=300)
    finally:
        if slurm.poll() is None:
            slurm.kill()
    cancel(submitted_jobs(slurm_log))
    return {"root": root, "slurm": root / "slurm", "local": root / "local", "job": job, "requeued_at": requeued_at,
            "codes": (slurm_code, local_code), "logs": (slurm_log, local_log), "wall": time.monotonic() - t0}


def _event_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for path in folder.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 1, "tensors": 0})
        acc.Reload()
        tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
    return tags


def test_slurm_sweep_leaves_what_the_local_launcher_leaves(sweeps: dict[str, Any]) -> None:
    slurm_code, local_code = sweeps["codes"]
    assert local_code == 0, sweeps["logs"][1][-3000:]
    assert slurm_code == 0, sweeps["logs"][0][-3000:] + job_logs(sweeps["slurm"])
    slurm_log = sweeps["logs"][0]
    assert "Bypassing sacct error" not in slurm_log and slurm_log.count("sacct") <= 1  # one line, no flood
    slurm, local = sweeps["slurm"], sweeps["local"]
    assert sorted(p.name for p in slurm.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))) == JOBS
    assert sorted(p.name for p in local.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))) == JOBS
    for name in JOBS:
        on_slurm, here = record(slurm / name), record(local / name)
        assert on_slurm["status"] == here["status"] == "finished"
        assert set(on_slurm) == set(here)  # the same record, field for field
        # Every job ran under slurmd: its record names the SLURM job; the local one names none.
        assert on_slurm["slurm"]["job_id"] and on_slurm["slurm"]["array_task_id"] == name[0]
        assert here["slurm"] is None and on_slurm["host"] == here["host"]
        for key in ("config_resolved.yaml", ".hydra/overrides.yaml", "checkpoints/last.ckpt"):
            assert (slurm / name / key).exists(), key
        assert _event_tags(slurm / name) == _event_tags(local / name)
    # The uninterrupted job is the local one, figure for figure (deterministic mode).
    for key in ("val_acc_best", "test_acc", "test_confusion", "history", "global_step", "epochs"):
        assert record(slurm / JOBS[1])[key] == record(local / JOBS[1])[key], key
    for sweep in (slurm, local):
        assert list(sweep.glob("events.out.tfevents.*hparams*")), f"no HParams record in {sweep}"
        summary = json.loads((sweep / "summary.json").read_text())
        assert summary["counts"] == {"finished": 2}
        assert [j["folder"] for j in summary["jobs"]] == JOBS


def test_requeued_job_resumes_from_its_last_checkpoint(sweeps: dict[str, Any]) -> None:
    assert sweeps["codes"][0] == 0, sweeps["logs"][0][-3000:] + job_logs(sweeps["slurm"])
    cut = record(sweeps["slurm"] / JOBS[0])
    whole = record(sweeps["local"] / JOBS[0])
    assert cut["status"] == "finished" and len(cut["segments"]) == 2
    first, second = cut["segments"]
    assert first["slurm"]["job_id"] == second["slurm"]["job_id"]  # the same job, run again
    assert second["slurm"].get("restart_count") == "1" and "restart_count" not in first["slurm"]
    log = (sweeps["slurm"] / JOBS[0] / "train.log").read_text()
    assert "resuming from" in log and "last.ckpt" in log
    # Stopped on the epoch boundary, resumed from that epoch's last.ckpt: the uninterrupted run exactly.
    assert cut["global_step"] == whole["global_step"] == 6 and cut["epochs"] == whole["epochs"] == 2
    assert cut["history"] == whole["history"] and cut["test_acc"] == whole["test_acc"]
    weights = [torch.load(p / JOBS[0] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for p in (sweeps["slurm"], sweeps["local"])]  # fmt: skip
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

