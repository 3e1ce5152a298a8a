"""Shared pieces of the cluster tests: where the cluster is, sweep commands, test-only callbacks."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from tests.conftest import REPO, TINY
from tests.reliability.helpers import run_env, train_command

CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
STATE = Path(os.environ.get("MARGINLOSS_SLURM_DIR", "/tmp/marginloss-slurm"))


def slurm_conf() -> Path:
    """The cluster's slurm.conf: $SLURM_CONF, else the one scripts/slurm_cluster.sh writes."""
    return Path(os.environ.get("SLURM_CONF") or STATE / "slurm.conf")


def cluster_problem() -> str | None:
    """Why the cluster tests cannot run here (one line), or None when the node answers."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (as root, scripts/slurm_cluster.sh up installs slurm-wlm and munge)"
    conf = slurm_conf()
    if not conf.exists():
        return f"no SLURM cluster is configured ({conf} missing; start one with scripts/slurm_cluster.sh up)"
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=15,
                             env=slurm_env()).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo does not answer ({err}); start the cluster with scripts/slurm_cluster.sh up"
    if not any(state.startswith(("idle", "mix", "alloc", "comp")) for state in out):
        return f"the SLURM node is not usable (sinfo: {' '.join(out) or 'nothing'}); scripts/slurm_cluster.sh up"
    return None


def slurm_env() -> dict[str, str]:
    return {**run_env(), "SLURM_CONF": str(slurm_conf())}


# Each job: one CPU and 1 GB of the node, no GPU. timeout_min is the jobs' SLURM time limit.
LAUNCHER = [
    "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
]  # fmt: skip
# The tiny synthetic jobs of tests/reliability, with one validation batch (eval_batch_size >= val_size):
# a stop asked for during the last training batch then lands exactly on the epoch boundary.
JOB = [*TINY, "data.eval_batch_size=128", "analysis.geometry=false", "analysis.retrieval=false",
       "callbacks.embeddings=null"]  # fmt: skip


def sweep_command(sweep: Path, *overrides: str, data: Path) -> list[str]:
    return train_command("-m", *LAUNCHER, f"data.root={data}", *JOB, f"hydra.sweep.dir={sweep}", *overrides)


def start_sweep(cmd: list[str], cwd: Path = REPO) -> subprocess.Popen:
    # The job processes run from the repository (sbatch keeps the working directory), so that
    # ``tests.cluster.helpers`` callbacks and ``hydra_plugins`` import there.
    return subprocess.Popen(cmd, cwd=cwd, env=slurm_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def submitted_jobs(log: str) -> list[str]:
    """The SLURM ids a sweep's log says it submitted (``submitted SLURM job(s) 12_0, 12_1``)."""
    found = re.findall(r"submitted SLURM job\(s\) ([\d_, ]+)", log)
    return [j.strip() for line in found for j in line.split(",") if j.strip()]


def cancel(jobs: list[str]) -> None:
    if jobs:
        subprocess.run(["scancel", *{j.split("_")[0] for j in jobs}], env=slurm_env(), capture_output=True, timeout=30)


def finish_sweep(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """Wait for a sweep; past ``timeout`` seconds it is killed and its jobs cancelled (the test fails)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        cancel(submitted_jobs(out))
        raise AssertionError(f"the sweep did not end within {timeout:.0f} s; log tail:\n{out[-4000:]}") from None
    return proc.returncode, out


def job_logs(sweep: Path, tail: int = 1500) -> str:
    """The end of every SLURM task's log in a sweep (submitit's .submitit/), for a failure message."""
    parts = []
    for path in sorted(sweep.glob(".submitit/*/*_log.*")):
        parts.append(f"--- {path.relative_to(sweep)}\n{path.read_text(errors='replace')[-tail:]}")
    return "\n".join(parts)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the sweep ended ({proc.returncode}) before {path} appeared:\n{out[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            out, _ = proc.communicate()
            cancel(submitted_jobs(out))
            raise AssertionError(f"{path} did not appear within {timeout:.0f} s:\n{out[-4000:]}")
        time.sleep(0.2)


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], env=slurm_env(), capture_output=True, text=True, timeout=30,
                          check=True).stdout  # fmt: skip


def record(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "metrics.json").read_text())


def _first_segment_of_task(task: int | None) -> bool:
    """True in a SLURM job's first run (not a requeued one), for array task ``task`` (None: any)."""
    if "SLURM_JOB_ID" not in os.environ or os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0"):
        return False
    return task is None or os.environ.get("SLURM_ARRAY_TASK_ID") == str(task)


def _hold(trainer: pl.Trainer, seconds: float) -> None:
    """Sleep up to ``seconds``, ending early once the run is told to stop (SIGTERM, SIGUSR2)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not trainer.received_sigterm:
        time.sleep(0.05)


class HoldForScheduler(pl.Callback):
    """Test-only: in the first run of SLURM array task ``task`` only, write ``marker`` (this job's id)
    and hold the run, so that the test can requeue or cancel it at a known point. ``at``:
    ``epoch_end`` (after epoch ``epoch``'s checkpoints, before Lightning's check for a stop: an
    exact epoch boundary) or ``step`` (after training step ``step``, mid-epoch)."""

    def __init__(self, marker: str, task: int | None = 0, at: str = "epoch_end", epoch: int = 0, step: int = 2,
                 seconds: float = 120.0) -> None:  # fmt: skip
        self.marker, self.task, self.at = Path(marker), task, at
        self.epoch, self.step, self.seconds = int(epoch), int(step), float(seconds)

    def _hold_here(self, trainer: pl.Trainer) -> None:
        if not _first_segment_of_task(self.task) or self.marker.exists():
            return
        job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        self.marker.write_text(f"{job}_{task}" if task is not None else job)
        _hold(trainer, self.seconds)

    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.at == "epoch_end" and trainer.current_epoch == self.epoch:
            self._hold_here(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.at == "step" and trainer.global_step == self.step:
            self._hold_here(trainer)


class SlowSegments(pl.Callback):
    """Test-only: in the first ``segments`` runs of a SLURM job (its restart count below that),
    wait after every training step until the run is told to stop (at most ``seconds``), so that
    the job reaches its time limit whenever SLURM's warning comes."""

    def __init__(self, segments: int, seconds: float = 300.0) -> None:
        self.segments, self.seconds = int(segments), float(seconds)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
        if "SLURM_JOB_ID" in os.environ and restart < self.segments:
            _hold(trainer, self.seconds)
