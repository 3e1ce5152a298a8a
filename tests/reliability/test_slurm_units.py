"""The SLURM pieces that need no scheduler: where a run ran (record fields), the one-line errors
for DDP layouts that cannot work, rank 0's decision reaching every rank, the job-state watcher
without accounting, and the job side's handling of time limits and exits. The same machinery
against a real scheduler: tests/cluster/."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from src.cluster import slurm as cluster
from src.errors import ConfigError, RunFolderError
from src.utils.where import PRECISION_FLAGS, cpu_facts, machine_line, where
from tests.conftest import compose_config

SLURM_JOB = {"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "1", "SLURM_PROCID": "0",
             "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "train",
             "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost", "SLURM_LOCALID": "0"}  # fmt: skip


@pytest.fixture
def in_slurm_job(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    return SLURM_JOB


def _lscpu() -> dict[str, str]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


# ------------------------------------------------------------------------------------------
# Where a run ran
# ------------------------------------------------------------------------------------------


def test_cpu_is_named_as_lscpu_names_it_with_its_numbers_and_precision_flags() -> None:
    facts = cpu_facts()
    if sys.platform.startswith("linux") and Path("/usr/bin/lscpu").exists():
        fields = _lscpu()
        assert facts["model_name"] == fields["Model name"]
        for key, name in (("family", "CPU family"), ("model", "Model"), ("stepping", "Stepping")):
            assert facts[key] == fields.get(name)
        present = set(fields.get("Flags", "").split())
        assert facts["flags"] == [f for f in PRECISION_FLAGS if f in present]
    line = machine_line(where())
    assert line.startswith(f"{socket.gethostname()} ") and facts["model_name"] in line
    if facts["family"]:
        assert f"family {facts['family']} model {facts['model']}" in line
    assert all(flag in line for flag in facts["flags"])


def test_record_names_host_slurm_job_cpu_gpu_and_the_threads_in_use(tmp_path: Path, in_slurm_job: dict) -> None:
    from src.training.records import RunRecord

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        record = RunRecord(tmp_path)
        torch.set_num_threads(1)  # what configure_hardware does after the record is opened
        record.update(threads=1)
        first = json.loads((tmp_path / "metrics.json").read_text())
        assert first["machine"].endswith(", 1 threads, cpu" if not torch.cuda.is_available() else first["machine"])
        assert ", 1 threads, " in first["machine"] and first["segments"][0]["threads"] == 1
        assert first["host"] == socket.gethostname() and first["cpu"]["model_name"]
        assert first["slurm"] == {"job_id": "41", "array_job_id": "40", "array_task_id": "1", "procid": "0",
                                  "ntasks": "1", "nodelist": "localhost"}  # fmt: skip
        assert first["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
        # A requeued segment (same job, restart count 1) gets its own facts; the first keeps its own.
        os.environ["SLURM_RESTART_COUNT"] = "1"
        RunRecord(tmp_path, previous=first).update(threads=1)
        second = json.loads((tmp_path / "metrics.json").read_text())
        assert [s["slurm"].get("restart_count") for s in second["segments"]] == [None, "1"]
        assert all({"host", "slurm", "cpu", "gpu", "threads", "machine"} <= set(s) for s in second["segments"])
    finally:
        os.environ.pop("SLURM_RESTART_COUNT", None)
        torch.set_num_threads(threads)


def test_outside_slurm_the_record_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.records import RunRecord

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    RunRecord(tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["slurm"] is None


def test_command_of_a_job_started_by_another_program_is_its_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.records import command_line

    compose_config(["loss=arcface", "loss.m=0.5"])  # sets HydraConfig with these task overrides
    monkeypatch.setattr(sys, "argv", ["/venv/lib/python3/site-packages/submitit/core/_submit.py", "/sweep/.submitit/7"])
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", SimpleNamespace(name="submitit.core._submit"))
    assert command_line() == "python -m src.train loss=arcface loss.m=0.5"


# ------------------------------------------------------------------------------------------
# DDP layouts: one-line errors
# ------------------------------------------------------------------------------------------


def test_tasks_per_node_must_equal_devices(synthetic_root: Path, in_slurm_job: dict) -> None:
    from src.training.validate import check_config

    cfg = compose_config([f"data.root={synthetic_root}", "trainer=ddp_cpu", "trainer.devices=2"])
    with pytest.raises(ConfigError) as caught:
        check_config(cfg)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("trainer.devices=2 is invalid: this SLURM job runs 1 task")
    assert "hydra.launcher.tasks_per_node=2" in message


def test_tasks_per_node_equal_to_devices_passes(synthetic_root: Path, in_slurm_job: dict,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from src.training.ranks import launched_world
    from src.training.validate import check_config

    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    check_config(compose_config([f"data.root={synthetic_root}", "trainer=ddp_cpu", "trainer.devices=2"]))
    assert launched_world() == (1, 2)


def test_multirun_with_a_relaunching_ddp_strategy_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from src.training.ranks import check_launch

    for key in [k for k in os.environ if k.startswith("SLURM_")] + ["TORCHELASTIC_RUN_ID"]:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError) as caught:
        check_launch({"strategy": "ddp", "devices": 4, "accelerator": "gpu"}, 4, multirun=True)
    assert "\n" not in str(caught.value) and "re-running the command line" in str(caught.value)
    assert "trainer=ddp_cpu" in str(caught.value) and "tasks_per_node=4" in str(caught.value)
    check_launch({"strategy": "ddp", "devices": 4}, 4, multirun=False)  # one run: torchrun/SLURM docs apply
    check_launch({"strategy": {"_target_": "src.training.distributed.MultiprocessDDPStrategy"}}, 2, multirun=True)


# ------------------------------------------------------------------------------------------
# Rank 0 decides for every rank
# ------------------------------------------------------------------------------------------


def _rank_main(rank: int, port: int, refuse: bool, queue: Any) -> None:
    os.environ.update({**SLURM_JOB, "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": str(rank),
                       "SLURM_LOCALID": str(rank), "MASTER_PORT": str(port), "MASTER_ADDR": "127.0.0.1"})  # fmt: skip
    from src.training.ranks import agree

    calls = []

    def decide() -> dict:
        calls.append(rank)
        if refuse:
            raise RunFolderError("run folder /x already holds a run (status finished)")
        return {"action": "resume", "checkpoint": "/x/checkpoints/last.ckpt"}

    try:
        queue.put((rank, "ok", agree(decide, {"accelerator": "cpu"}), calls))
    except Exception as err:
        queue.put((rank, type(err).__name__, str(err), calls))


@pytest.mark.parametrize("refuse", [False, True])
def test_rank_0_decides_and_every_rank_gets_its_answer(refuse: bool) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")  # the children set their SLURM variables before anything reads them
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(rank, port, refuse, queue)) for rank in (0, 1)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[3] for r in results] == [[0], []]  # only rank 0 looked at the folder
    if refuse:  # the same one-line error on both ranks: neither waits for the other
        refusal = ("RunFolderError", "run folder /x already holds a run (status finished)")
        assert [r[1:3] for r in results] == [refusal, refusal]
    else:
        plan = ("ok", {"action": "resume", "checkpoint": "/x/checkpoints/last.ckpt"})
        assert [r[1:3] for r in results] == [plan, plan]


# ------------------------------------------------------------------------------------------
# The sweep's watcher without accounting
# ------------------------------------------------------------------------------------------


def test_job_states_come_from_squeue_when_sacct_cannot_answer(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    pytest.importorskip("submitit")
    answers = {"squeue": "12_0|RUNNING|vm\n12_1|PENDING|\n"}
    calls: list[str] = []

    def fake_run(command: list[str], **kwargs: Any) -> SimpleNamespace:
        calls.append(command[0])
        if command[0] == "sacct":
            raise subprocess.CalledProcessError(1, command, stderr=b"Slurm accounting storage is disabled\n")
        return SimpleNamespace(stdout=answers["squeue"].encode())

    monkeypatch.setattr(cluster.subprocess, "run", fake_run)
    watcher = cluster._queue_watcher()
    with caplog.at_level(logging.INFO, logger="src.cluster.slurm"):
        assert watcher.get_state("12_0", mode="force") == "RUNNING"
        assert watcher.get_state("12_1", mode="force") == "PENDING" and not watcher.is_done("12_1", mode="cache")
        answers["squeue"] = "12_1|CANCELLED|\n"  # 12_0 is gone from squeue (past MinJobAge): it ended
        watcher.update()
    assert watcher.get_state("12_1", mode="cache") == "CANCELLED" and watcher.is_done("12_1", mode="cache")
    assert watcher.get_state("12_0", mode="cache") == "ENDED" and watcher.is_done("12_0", mode="cache")
    assert calls.count("sacct") == 1  # asked once, then never again
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["job states from squeue: sacct cannot answer (Slurm accounting storage is disabled)"]


# ------------------------------------------------------------------------------------------
# The job side: time limits and exits
# ------------------------------------------------------------------------------------------


class _FakeSubmititHandler:
    def __init__(self, countdown: int) -> None:
        self._delayed = SimpleNamespace(_timeout_countdown=countdown)
        self.called: list[int] = []

    def has_timed_out(self) -> bool:
        return True

    def checkpoint_and_try_requeue(self, signum: int, frame: Any) -> None:
        self.called.append(signum)


@pytest.mark.parametrize(("countdown", "words"), [(1, "requeued to continue from last.ckpt (0 requeue(s) left)"),
                                                  (0, "no requeue left")])  # fmt: skip
def test_time_limit_stops_the_run_first_and_hands_over_to_submitit(countdown: int, words: str) -> None:
    import signal

    from src.callbacks import signals

    fake = _FakeSubmititHandler(countdown)
    previous = signal.signal(signal.SIGUSR2, fake.checkpoint_and_try_requeue)
    try:
        limit = cluster._TimeLimit()
        limit.install()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert limit.pending and not fake.called  # the run is asked to stop; submitit waits
        reason = signals._cluster_stop["reason"]
        assert reason.startswith("SLURM time limit (SIGUSR2): ") and words in reason
        assert signals.interruption(signals.SIGTERMException()) == (reason, 143)
        limit.hand_over()
        assert fake.called == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
        signals._cluster_stop["reason"] = None


def test_exits_of_a_job_task(monkeypatch: pytest.MonkeyPatch) -> None:
    import src.training.ranks as ranks

    def exits(code: int) -> Any:
        def call() -> None:
            raise SystemExit(code)

        return call

    monkeypatch.setattr(ranks, "launched_world", lambda: (1, 2))
    assert cluster.run_task(exits(143)) is None  # rank 1 stopped with rank 0: rank 0 reports
    with pytest.raises(SystemExit):
        cluster.run_task(exits(2))  # rank 1's own error: non-zero, srun ends the job
    monkeypatch.setattr(ranks, "launched_world", lambda: (0, 2))
    with pytest.raises(RuntimeError, match="job failed with exit status 2"):
        cluster.run_task(exits(2))  # stored as the job's result, and the task fails
    with pytest.raises(SystemExit) as caught:
        cluster.run_task(exits(143))  # cancelled or preempted: no result, the job may come back
    assert caught.value.code == 143
    assert cluster.run_task(lambda: 0.5) == 0.5
