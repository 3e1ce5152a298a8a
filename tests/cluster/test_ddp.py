"""DDP under SLURM on the CPU: two SLURM tasks on the node (``tasks_per_node=2``, ``trainer=ddp_cpu
trainer.devices=2``) make one 2-process run through Lightning's SLURM environment: rank 0 alone
owns the run folder (one record, one set of checkpoints, one set of event files), and the figures
match a 1-process run with the same global batch within what DDP allows (per-rank batch-norm
statistics and dropout masks).
The known traps end quickly with one line: tasks per node different from ``trainer.devices``, and
a run folder refused on rank 0, which fails the whole job instead of leaving rank 1 waiting."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import cancel, finish_sweep, job_logs, record, start_sweep, submitted_jobs, sweep_command

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # real jobs on a scheduler: make test-all

COMMON = ["seed=0", "trainer.max_epochs=2", "trainer.deterministic=true", "hydra.sweep.subdir=run"]
# The same global batch of 32 images as the 1-process run: 16 on each of the two ranks. Averaged
# gradients agree; batch-norm statistics (over 16 images; SyncBatchNorm needs GPUs) and dropout masks
# (per rank) do not, hence the tolerances below.
DDP = ["hydra.launcher.tasks_per_node=2", "trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=16"]


@pytest.fixture(scope="module")
def ddp(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cluster_ddp")
    t0 = time.monotonic()
    slurm = start_sweep(sweep_command(root / "ddp", *COMMON, *DDP, data=synthetic_root))
    single_cmd = [a for a in sweep_command(root / "single", *COMMON, data=synthetic_root)
                  if not a.startswith("hydra.launcher.") and a != "hydra/launcher=slurm"]  # fmt: skip
    single = start_sweep(single_cmd)
    single_code, single_log = finish_sweep(single, timeout=300)
    code, log = finish_sweep(slurm, timeout=300)
    cancel(submitted_jobs(log))
    return {"root": root, "ddp": root / "ddp" / "run", "single": root / "single" / "run", "code": code, "log": log,
            "single_code": single_code, "single_log": single_log, "wall": time.monotonic() - t0}


def test_two_slurm_tasks_make_one_ddp_run(ddp: dict[str, Any]) -> None:
    assert ddp["single_code"] == 0, ddp["single_log"][-3000:]
    assert ddp["code"] == 0, ddp["log"][-3000:] + job_logs(ddp["ddp"].parent)
    run, single = ddp["ddp"], ddp["single"]
    rec, one = record(run), record(single)
    assert rec["status"] == "finished" and rec["slurm"]["ntasks"] == "2"
    task_logs = {p.name: p.read_text() for p in (run.parent / ".submitit").glob("*/*_log.*")}
    assert any("MEMBER: 2/2" in text for text in task_logs.values()), "rank 1 did not join"
    # One owner: one record, one set of checkpoints, event files from one process only.
    assert [p.relative_to(run.parent) for p in run.parent.rglob("metrics.json")] == [Path("run/metrics.json")]
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("best-"), names
    writers = {re.match(r"events\.out\.tfevents\.\d+\.(.+\.\d+)\.\d+", p.name).group(1)
               for p in run.glob("events.out.tfevents.*")}  # fmt: skip
    assert len(writers) == 1, writers
    # The same run as one process with the same global batch: counts exactly, accuracies nearly.
    assert rec["epochs"] == one["epochs"] == 2 and rec["global_step"] == one["global_step"]
    assert sum(map(sum, rec["test_confusion"])) == sum(map(sum, one["test_confusion"])) == 120
    assert abs(rec["test_acc"] - one["test_acc"]) <= 0.1, (rec["test_acc"], one["test_acc"])
    assert abs(rec["val_acc_best"] - one["val_acc_best"]) <= 0.1, (rec["val_acc_best"], one["val_acc_best"])
    for mine, theirs in zip(rec["history"], one["history"], strict=True):
        assert mine["step"] == theirs["step"] and abs(mine["train/acc"] - theirs["train/acc"]) <= 0.05
        assert mine["train/loss"] == pytest.approx(theirs["train/loss"], rel=0.25, abs=0.05)


@pytest.fixture(scope="module")
def traps(ddp: dict[str, Any], synthetic_root: Path) -> dict[str, Any]:
    """Both traps submitted side by side: one task per node with trainer.devices=2, and a refused
    folder (resume=true with another config in the finished DDP run's folder)."""
    assert ddp["code"] == 0, "needs the finished DDP run"
    run = ddp["ddp"]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "train.log"}
    one_task = ddp["root"] / "one_task"
    t0 = time.monotonic()
    procs = {
        "one_task": start_sweep(sweep_command(one_task, *COMMON, "trainer=ddp_cpu", "trainer.devices=2",
                                              data=synthetic_root)),
        "refused": start_sweep(sweep_command(ddp["root"] / "ddp", *COMMON, *DDP, "resume=true",
                                             "trainer.max_epochs=3", data=synthetic_root)),
    }  # fmt: skip
    out = {name: finish_sweep(proc, timeout=240) for name, proc in procs.items()}
    for _, log in out.values():
        cancel(submitted_jobs(log))
    return {"run": run, "before": before, "one_task": one_task, "out": out, "wall": time.monotonic() - t0}


def test_tasks_per_node_must_equal_devices(traps: dict[str, Any]) -> None:
    code, log = traps["out"]["one_task"]
    sweep = traps["one_task"]
    assert code == 1, log[-3000:]  # ended, not hung (the fixture bounds it)
    errors = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    lines = [line for line in errors.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "trainer.devices=2 is invalid" in lines[0] and "tasks_per_node=2" in lines[0], lines
    assert record(sweep / "run")["status"] == "failed"  # says why, for the sweep summary


def test_a_refusal_on_rank_0_fails_the_whole_job(traps: dict[str, Any]) -> None:
    """rank 0 refuses: every rank exits with that error, SLURM ends the job as failed at once (no
    rank waits in the process group), the run's files stay as they were."""
    code, log = traps["out"]["refused"]
    run = traps["run"]
    # One line naming the job and rank 0's error (the job stored it as its result: no wait for squeue).
    assert re.search(r"job #0 \(SLURM \S+, \w+\) ended without a result: \S*RunFolderError: resume=true in", log), \
        log[-3000:] + job_logs(run.parent)
    folder = run.parent / ".submitit" / submitted_jobs(log)[0]
    rank1 = next(folder.glob("*_1_log.err")).read_text()
    assert "rank 1: rank 0 refused the run" in rank1 or "error: resume=true in" in rank1
    assert {p: p.read_bytes() for p in traps["before"]} == traps["before"]
    assert code in (0, 1)  # the sweep's status follows the records, which say finished
