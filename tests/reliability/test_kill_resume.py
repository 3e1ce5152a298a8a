"""Fault injection: a run killed with SIGKILL at seeded-random points of its training,
three times in a row, each time resumed with the same command, ends with exactly the metrics and
weights of an uninterrupted run (deterministic mode), and every resume starts from the newest
complete state.

Why equality is sound at *any* kill point: SIGKILL writes nothing, so the newest checkpoint is
always an end-of-epoch one (written atomically; a kill during the write leaves the previous file and
a ``.tmp`` that resume ignores), and a run resumed from an end-of-epoch checkpoint replays the
next epochs exactly (data order from seed and epoch, dropout from the saved RNG state)."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from src.training.admission import newest_checkpoint
from src.training.pipeline import run
from tests.conftest import TINY, compose_config
from tests.reliability.helpers import LEAN, finish, record, start, train_command
from tests.reliability.test_resume import HISTORY_KEYS, _same_weights

pytestmark = pytest.mark.slow  # a fault injection loop: SIGKILLs at random points, resumed each time

EPOCHS, BATCHES = 3, 4  # 12 training steps


def _steps(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _kill_at(proc, log: Path, step: int, delay: float, timeout: float = 240) -> None:
    """SIGKILL ``proc`` ``delay`` seconds after its log reaches ``step`` (mid-epoch, validation or a
    checkpoint write, wherever that lands)."""
    deadline = time.monotonic() + timeout
    while not _steps(log) or _steps(log)[-1] < step:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before step {step}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"step {step} not reached in {timeout} s"
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)


def test_three_random_sigkills_then_resume_equal_an_uninterrupted_run(synthetic_root: Path, tmp_path: Path) -> None:
    rng = random.Random(20261124)  # seeded: the same kill points on every run of the test
    targets = sorted(rng.sample(range(2, EPOCHS * BATCHES), 3))
    delays = [rng.uniform(0.0, 0.3) for _ in targets]
    common = [f"data.root={synthetic_root}", *TINY, *LEAN, "loss=sphereface", f"trainer.max_epochs={EPOCHS}",
              f"trainer.limit_train_batches={BATCHES}", "trainer.deterministic=true",
              "+callbacks.steps._target_=tests.reliability.helpers.StepLog"]  # fmt: skip
    folder, log = tmp_path / "killed", tmp_path / "steps.log"
    overrides = [*common, f"+callbacks.steps.path={log}", f"hydra.run.dir={folder}"]

    reference: dict = {}
    ref_folder = tmp_path / "reference"
    thread = threading.Thread(target=lambda: reference.update(run(compose_config(
        [*common, f"+callbacks.steps.path={tmp_path / 'reference.log'}"], output_dir=ref_folder), ref_folder)))
    thread.start()  # meanwhile, the uninterrupted run

    newest = 0  # global step of the newest complete checkpoint so far
    fresh = 0  # the last segment that started from scratch (no checkpoint yet: a new record too)
    for i, (step, delay) in enumerate(zip(targets, delays, strict=True)):
        log.unlink(missing_ok=True)
        proc = start(train_command(*overrides, *(["resume=true"] if i else [])))
        _kill_at(proc, log, step, delay)
        code, _, err = finish(proc)
        assert code == -signal.SIGKILL, f"kill {i + 1} at step {step} missed the run ({code}): {err[-2000:]}"
        steps = _steps(log)
        assert steps[0] == newest + 1, (i, steps)  # this segment continued from the newest complete state
        found = newest_checkpoint(folder)
        if found is None:  # killed before the first checkpoint: the next segment starts the run again
            fresh = i + 1
        else:
            state = torch.load(found, weights_only=True)
            assert state["global_step"] % BATCHES == 0  # SIGKILL leaves only end-of-epoch checkpoints
            assert state["global_step"] >= newest  # never back in time
            newest = state["global_step"]
        assert record(folder)["status"] == "running"

    log.unlink(missing_ok=True)
    code, _, err = finish(start(train_command(*overrides, "resume=true")))
    assert code == 0, err[-3000:]
    thread.join()
    assert _steps(log)[0] == newest + 1 if newest < EPOCHS * BATCHES else not _steps(log)

    resumed = record(folder)
    # Every start is a segment, a start from scratch after a kill before the first checkpoint too
    # (the record keeps the earlier segments); how many kills came that early depends on the
    # machine's speed, so it is only reported.
    assert resumed["status"] == "finished" and len(resumed["segments"]) == 4, (fresh, resumed["segments"])
    assert resumed["epochs"] == reference["epochs"] == EPOCHS
    assert resumed["global_step"] == reference["global_step"] == EPOCHS * BATCHES
    rows = [{k: r[k] for k in HISTORY_KEYS} for r in resumed["history"]]
    assert rows == [{k: r[k] for k in HISTORY_KEYS} for r in reference["history"]]
    for key in ("val_acc_best", "test_acc", "test_acc_macro", "test_confusion"):
        assert resumed[key] == reference[key], key
    _same_weights(folder / "checkpoints" / "last.ckpt", ref_folder / "checkpoints" / "last.ckpt")
    # The record says where the data came from.
    files = resumed["data_files"]
    assert set(files) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert all(len(f["sha256"]) == 64 and Path(f["path"]).parent == synthetic_root.resolve() for f in files.values())
