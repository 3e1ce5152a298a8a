"""Time limits on a real SLURM scheduler. Two jobs with a 2-minute limit and one requeue
(``max_num_timeout=1``) train too slowly to finish in time: SLURM's warning (SIGUSR2,
``signal_delay_s`` before the limit) stops each run after its current batch with a fresh
last.ckpt, and submitit requeues it. Job 0 is fast once requeued and finishes; job 1 is slow again,
runs out of requeues and is recorded as interrupted, not finished; the sweep exits non-zero.

slurmctld checks time limits every 30 s and sends the warning up to 30 s early (when the time left
is below ``signal_delay_s`` + 30 s): with a 120 s limit and a 60 s delay it comes 30-60 s into each
run, after submitit's handlers are in place and after a requeued fast run has trained."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cluster.helpers import cancel, finish_sweep, job_logs, record, start_sweep, submitted_jobs, sweep_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # real jobs on a scheduler: make test-all


def test_time_limit_checkpoints_requeues_and_runs_out(synthetic_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "timeout"
    cmd = sweep_command(
        sweep, "resume=true", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60", "hydra.launcher.max_num_timeout=1",
        # Held after each step until told to stop: in the first run of job 0, in both runs of job 1.
        "+callbacks.slow._target_=tests.cluster.helpers.SlowSegments", "+callbacks.slow.segments=1,2",
        data=synthetic_root,
    )  # fmt: skip
    t0 = time.monotonic()
    code, log = finish_sweep(start_sweep(cmd), timeout=420)
    cancel(submitted_jobs(log))
    wall = time.monotonic() - t0
    assert code == 1, log[-3000:] + job_logs(sweep)  # one job did not finish
    assert "1 finished, 1 interrupted" in log, log[-3000:] + job_logs(sweep)

    finished = record(sweep / "0_callbacks.slow.segments=1")
    assert finished["status"] == "finished", finished.get("reason")
    assert len(finished["segments"]) == 2 and finished["segments"][1]["slurm"]["restart_count"] == "1"
    assert finished["global_step"] == 6 and finished["epochs"] == 2  # all of it, across the requeue
    job_log = (sweep / "0_callbacks.slow.segments=1" / "train.log").read_text()
    assert "SIGUSR2" in job_log and "saved" in job_log and "last.ckpt" in job_log  # checkpointed before the requeue

    out_of_requeues = record(sweep / "1_callbacks.slow.segments=2")
    assert out_of_requeues["status"] == "interrupted"
    assert "no requeue left" in out_of_requeues["reason"]
    assert len(out_of_requeues["segments"]) == 2
    assert (sweep / "1_callbacks.slow.segments=2" / "checkpoints" / "last.ckpt").exists()
    assert "ended without a result" in log  # one line for the failed job, not a traceback
    assert "Traceback" not in log
    print(f"timeout sweep: {wall:.0f} s")
