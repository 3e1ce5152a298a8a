"""Issue #12.2: a study outlives its process. The study's sweep is killed part-way (SIGKILL, as when
a machine restarts) and the same command is run again: finished runs are kept byte for byte and
never retrained, the run that was cut off resumes from its checkpoint, the rest start, and the
sweep ends with every run finished and exit status 0."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.reliability.helpers import LEAN, finish, record, start, train_command, wait_for

pytestmark = pytest.mark.slow  # a real study sweep, SIGKILLed and continued


def test_killed_study_sweep_continues_with_the_same_command(synthetic_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "study"
    command = train_command(
        "-m", "experiment=study", "seed=0,1", "study_config=softmax,sphereface_m2", f"hydra.sweep.dir={sweep}",
        f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        # From step 4 (the second epoch) each job pauses after every step and says so in its folder.
        "+callbacks.pause._target_=tests.reliability.helpers.PauseAfterStep", "+callbacks.pause.step=4",
        "+callbacks.pause.marker=${hydra:runtime.output_dir}/paused", "+callbacks.pause.seconds=0.3",
    )
    first, cut = sweep / "softmax_seed0", sweep / "sphereface_m2_seed0"
    proc = start(command, cwd=tmp_path)
    wait_for(cut / "paused", proc, timeout=300)  # job 2 is in its second epoch; job 1 has finished
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    assert record(first)["status"] == "finished"
    assert record(cut)["status"] == "running" and (cut / "checkpoints" / "last.ckpt").exists()
    assert [row["epoch"] for row in record(cut)["history"]] == [0]  # the record followed the finished epoch
    assert not (sweep / "softmax_seed1").exists()
    kept = {p: p.read_bytes() for p in (first / "metrics.json", *(first / "checkpoints").glob("*.ckpt"))}

    code, out, err = finish(start(command, cwd=tmp_path), timeout=600)
    assert code == 0, err[-3000:]
    assert {p: p.read_bytes() for p in kept} == kept  # the finished run was not touched
    assert "already finished" in out
    resumed = record(cut)
    assert resumed["status"] == "finished" and len(resumed["segments"]) == 2
    assert resumed["global_step"] == 6 and [row["epoch"] for row in resumed["history"]] == [0, 1]
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["counts"] == {"finished": 4}
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "_seeds", "softmax_seed0", "softmax_seed1", "sphereface_m2_seed0", "sphereface_m2_seed1",
    ]  # fmt: skip  (_seeds: the seed bands that the multirun's end writes)
