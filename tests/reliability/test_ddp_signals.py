"""SIGTERM and Ctrl-C to a ``trainer=ddp_cpu`` run stop every worker after the same
batch, with one consistent interrupt checkpoint and an ``interrupted`` record; SIGKILL to the main
process takes the workers with it (before, they kept training as orphans while the record said
``running`` forever). Three real 2-process runs, signalled mid-epoch at the same time."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.reliability.helpers import LEAN, TINY, finish, record, run_env, start, train_command

pytestmark = pytest.mark.slow  # real DDP worker processes, signalled and resumed

STEPS_PER_EPOCH = 5  # 300 training images / 2 ranks / batch 32


def _alive(group: int) -> list[str]:
    """Processes of the process group that are still running (zombies have exited)."""
    pids = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


def _start_in_group(cmd: list[str]) -> subprocess.Popen:
    """Its own process group, as a terminal job: Ctrl-C there reaches every process of the group."""
    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setsid()

    return subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], env=run_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=child)  # fmt: skip


@pytest.fixture(scope="module")
def signalled(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    tmp = tmp_path_factory.mktemp("ddp_signals")
    runs = {}
    for name in ("SIGTERM", "ctrl_c", "SIGKILL"):
        folder, marker = tmp / name, tmp / f"{name}.marker"
        # Both ranks pause after each step from step 7 (mid-epoch 1) on, so the signal lands mid-epoch.
        overrides = [f"data.root={synthetic_root}", *TINY, *LEAN, "loss=sphereface", "trainer=ddp_cpu",
                     "+callbacks.pause._target_=tests.reliability.helpers.PauseAfterStep", "+callbacks.pause.step=7",
                     f"+callbacks.pause.marker={marker}", "+callbacks.pause.seconds=0.5"]  # fmt: skip
        runs[name] = (_start_in_group(train_command(*overrides, f"hydra.run.dir={folder}")), folder, marker, overrides)
    waiting, deadline = set(runs), time.monotonic() + 240
    while waiting:  # each run is signalled as soon as it is mid-epoch, whatever the others do
        for name in sorted(waiting):
            proc, _, marker, _ = runs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name}: the run ended ({proc.returncode}) before it was signalled: "
                                     f"{proc.stderr.read()[-3000:]}")
            if not marker.exists():
                continue
            if name == "SIGTERM":
                proc.send_signal(signal.SIGTERM)  # to the main process only, as `kill <pid>` or `timeout` do
            elif name == "ctrl_c":
                os.killpg(proc.pid, signal.SIGINT)  # to every process, as a terminal does
            else:
                proc.send_signal(signal.SIGKILL)
            waiting.discard(name)
        assert time.monotonic() < deadline, f"not mid-epoch within 240 s: {sorted(waiting)}"
        time.sleep(0.02)
    out = {}
    for name, (proc, folder, _, overrides) in runs.items():
        code, _, err = finish(proc, timeout=240)
        deadline = time.monotonic() + 10
        while _alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        out[name] = (code, err, folder, overrides, _alive(proc.pid))
    return out


@pytest.mark.parametrize(("name", "code", "reason"),
                         [("SIGTERM", 143, "SIGTERM"), ("ctrl_c", 130, "KeyboardInterrupt")])
def test_sigterm_and_ctrl_c_stop_every_worker_with_one_checkpoint(signalled: dict, name: str, code: int,
                                                                  reason: str) -> None:  # fmt: skip
    got, err, folder, _, alive = signalled[name]
    assert got == code, err[-3000:]
    assert alive == [], f"workers still running after the main process exited: {alive}"
    rec = record(folder)
    assert rec["status"] == "interrupted" and rec["reason"] == reason, rec
    assert [row["epoch"] for row in rec["history"]] == [0]  # the finished epoch, sent back from the workers
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    step = checkpoint["global_step"]
    assert 7 <= step < 2 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH, step  # saved mid-epoch 1, at the stop
    assert checkpoint["state_dict"]["head.step"].item() == step  # a whole step, on every rank
    assert "Traceback" not in err


def test_sigkill_to_the_main_process_takes_the_workers_with_it(signalled: dict) -> None:
    code, err, folder, _, alive = signalled["SIGKILL"]
    assert code == -signal.SIGKILL, err[-3000:]
    assert alive == [], f"orphaned workers still running: {alive}"
    assert record(folder)["status"] == "running"  # killed without a word, as documented
    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)  # whole (atomic)
    assert checkpoint["global_step"] == STEPS_PER_EPOCH  # the end of epoch 0


def test_an_interrupted_ddp_run_resumes_to_the_end(signalled: dict) -> None:
    _, _, folder, overrides, _ = signalled["SIGTERM"]
    code, _, err = finish(start(train_command(*overrides, f"hydra.run.dir={folder}", "resume=true")), timeout=240)
    assert code == 0, err[-3000:]
    rec = record(folder)
    assert rec["status"] == "finished" and rec["epochs"] == 2 and rec["global_step"] == 2 * STEPS_PER_EPOCH
    assert [row["epoch"] for row in rec["history"]] == [0, 1] and len(rec["segments"]) == 2


def test_a_full_disk_in_a_worker_reaches_the_main_process_as_the_same_oserror() -> None:
    """src.train turns an OSError into one line; from a worker it arrives as torch's
    ProcessRaisedException holding the traceback text, so the launcher rebuilds it."""
    from src.training.distributed import _reraised

    worker = RuntimeError("\n-- Process 0 terminated with the following error:\nTraceback (most recent call last):\n"
                          "  File \"x.py\", line 1\nOSError: [Errno 28] No space left on device: '/run/last.ckpt'\n")
    err = _reraised(worker)
    assert isinstance(err, OSError) and (err.errno, err.strerror, err.filename) == (
        28, "No space left on device", "/run/last.ckpt")
    assert _reraised(RuntimeError("ValueError: something else")).__class__ is RuntimeError


def test_the_epoch_listener_reaches_spawned_workers(tmp_path: Path) -> None:
    """trainer=ddp_cpu spawns its workers on GPUs: everything in the trainer is pickled, and a closure
    as EpochHistory's listener made every such run fail before training (``Can't pickle local
    object``). Spawning for real takes ~30 s here, so this checks the pickling itself."""
    import pickle

    from src.training.pipeline import RecordEpochs
    from src.training.records import RunRecord

    listener = pickle.loads(pickle.dumps(RecordEpochs(RunRecord(tmp_path), None)))
    listener([{"epoch": 0, "val/acc": 0.5}])
    assert record(tmp_path)["history"] == [{"epoch": 0, "val/acc": 0.5}]
