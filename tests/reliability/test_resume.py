"""A run killed with SIGKILL resumes from ``last.ckpt`` into the same folder with the
documented command and ends exactly like an uninterrupted run; SIGTERM and Ctrl-C write a
checkpoint before exiting; the same seed in deterministic mode gives identical results."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from src.training.pipeline import run
from tests.conftest import TINY, compose_config
from tests.reliability.helpers import LEAN, finish, record, start, train_command, wait_for

HISTORY_KEYS = ("epoch", "step", "train/loss", "train/acc", "val/loss", "val/acc")


def _same_weights(a: Path, b: Path) -> None:
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert ca["global_step"] == cb["global_step"] and ca["epoch"] == cb["epoch"]
    assert ca["state_dict"].keys() == cb["state_dict"].keys()
    for key, value in ca["state_dict"].items():
        assert torch.equal(value, cb["state_dict"][key]), key
    sa, sb = ca["lr_schedulers"][0], cb["lr_schedulers"][0]
    assert sa["last_epoch"] == sb["last_epoch"] and sa["_last_lr"] == sb["_last_lr"]  # LR schedule resumed
    for (ka, va), (_, vb) in zip(ca["optimizer_states"][0]["state"].items(), cb["optimizer_states"][0]["state"].items(),
                                 strict=True):  # fmt: skip
        for name in va:
            assert torch.equal(va[name], vb[name]), (ka, name)


@pytest.mark.slow  # fault injection: a training process killed or signalled, then resumed
def test_sigkill_then_resume_matches_an_uninterrupted_run(synthetic_root: Path, tmp_path: Path) -> None:
    # SphereFace: its lambda schedule lives in a step buffer that must resume too.
    overrides = [f"data.root={synthetic_root}", *TINY, "loss=sphereface", "trainer.max_epochs=3",
                 "trainer.limit_train_batches=4", "trainer.deterministic=true", *LEAN]  # fmt: skip
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    proc = start(train_command(*overrides, f"hydra.run.dir={killed}"))

    def kill_after_first_epoch() -> None:
        wait_for(killed / "checkpoints" / "last.ckpt", proc, timeout=240)
        proc.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_epoch)
    killer.start()
    expected = run(compose_config(overrides, output_dir=reference), reference)  # meanwhile, uninterrupted
    killer.join()
    code, _, err = finish(proc)
    assert code == -signal.SIGKILL, f"the run was not killed mid-training ({code}): {err[-2000:]}"
    assert record(killed)["status"] == "running"  # killed without a word
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] < 2

    # The documented command: the same overrides, the run folder, resume=true.
    code, _, err = finish(start(train_command(*overrides, f"hydra.run.dir={killed}", "resume=true")))
    assert code == 0, err[-3000:]
    resumed = record(killed)
    assert resumed["status"] == "finished" and resumed["epochs"] == expected["epochs"] == 3
    assert resumed["global_step"] == expected["global_step"] == 12
    rows = [{k: r[k] for k in HISTORY_KEYS} for r in resumed["history"]]
    assert rows == [{k: r[k] for k in HISTORY_KEYS} for r in expected["history"]]
    for key in ("val_acc_best", "test_acc", "test_acc_macro", "test_confusion"):
        assert resumed[key] == expected[key], key
    _same_weights(killed / "checkpoints" / "last.ckpt", reference / "checkpoints" / "last.ckpt")


@pytest.fixture
def signalled_runs(synthetic_root: Path, tmp_path: Path) -> dict[str, tuple[Path, list[str], int, str]]:
    """Two runs, stopped with SIGTERM and Ctrl-C (SIGINT) in the middle of their first epoch."""
    out = {}
    procs = {}
    for name in ("SIGTERM", "SIGINT"):
        folder, marker = tmp_path / name, tmp_path / f"{name}.marker"
        # The pause is part of the run's config, so the resume command below repeats it (a resume
        # with other overrides is refused); it ends at step 6 and costs the resumed run little.
        pause = ["+callbacks.pause._target_=tests.reliability.helpers.PauseAfterStep", "+callbacks.pause.step=3",
                 f"+callbacks.pause.marker={marker}", "+callbacks.pause.seconds=0.5", "+callbacks.pause.last_step=6"]
        overrides = [f"data.root={synthetic_root}", *TINY, *LEAN, "loss=sphereface", *pause]
        procs[name] = (start(train_command(*overrides, f"hydra.run.dir={folder}")), folder, marker, overrides)
    waiting, deadline = set(procs), time.monotonic() + 240
    while waiting:  # each run is signalled as soon as it pauses, not in turn (a fast one could pass its pauses)
        for name in sorted(waiting):
            proc, _, marker, _ = procs[name]
            if proc.poll() is not None:
                raise AssertionError(f"{name}: the run ended ({proc.returncode}) before it was signalled")
            if marker.exists():
                proc.send_signal(getattr(signal, name))
                waiting.discard(name)
        assert time.monotonic() < deadline, f"no pause within 240 s: {sorted(waiting)}"
        time.sleep(0.02)
    for name, (proc, folder, _, overrides) in procs.items():
        code, _, err = finish(proc)
        out[name] = (folder, overrides, code, err)
    return out


@pytest.mark.slow  # fault injection: a training process killed or signalled, then resumed
def test_sigterm_and_ctrl_c_save_a_checkpoint_then_resume(signalled_runs: dict) -> None:
    for name, expected_code, reason in (("SIGTERM", 143, "SIGTERM"), ("SIGINT", 130, "KeyboardInterrupt")):
        folder, _, code, err = signalled_runs[name]
        assert code == expected_code, (name, err[-3000:])
        rec = record(folder)
        assert rec["status"] == "interrupted" and rec["reason"] == reason, rec
        checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
        # Saved at the interruption, in the middle of epoch 0 (10 batches), not at an epoch end.
        assert checkpoint["epoch"] == 0 and 3 <= checkpoint["global_step"] < 10, (name, checkpoint["global_step"])
        assert checkpoint["state_dict"]["head.step"].item() == checkpoint["global_step"]

    folder, overrides, _, _ = signalled_runs["SIGTERM"]
    metrics = run(compose_config([*overrides, "resume=true"], output_dir=folder), folder)
    assert record(folder)["status"] == "finished"
    assert metrics["epochs"] == 2 and metrics["global_step"] == 20  # the run completed its 2 epochs x 10 steps
    names = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt"))
    assert names[-1] == "last.ckpt" and len(names) == 2 and names[0].startswith("best-")  # no last-v1.ckpt
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20


def test_same_seed_deterministic_runs_are_identical(synthetic_root: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={synthetic_root}", *TINY, "trainer.deterministic=true", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=3", *LEAN, "seed=7"]  # fmt: skip
    a, b = (run(compose_config(overrides, output_dir=tmp_path / name), tmp_path / name) for name in ("a", "b"))
    for key in ("val_acc_best", "test_acc", "test_confusion", "global_step"):
        assert a[key] == b[key], key
    rows = [[{k: r[k] for k in HISTORY_KEYS} for r in m["history"]] for m in (a, b)]
    assert rows[0] == rows[1]
    _same_weights(tmp_path / "a" / "checkpoints" / "last.ckpt", tmp_path / "b" / "checkpoints" / "last.ckpt")
