"""SIGTERM to a local multirun (``hydra/launcher=local_parallel``, joblib worker processes), or a
terminal's Ctrl-C to it and its workers at once: the launcher stops its workers, each running job
saves a checkpoint and records ``interrupted``, no further job starts, every worker ends and the
command exits 143 (130 for Ctrl-C). Before, the launcher died alone (after Ctrl-C, saying that
nothing was written) and its orphaned workers trained on or lingered, holding their run folders,
and spun at full CPU once their job ended."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from src.utils import procs
from tests.reliability.helpers import LEAN, TINY, finish, record, start, train_command

pytestmark = pytest.mark.slow  # real launcher worker processes


def _sigterm_to_the_launcher(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)


def _ctrl_c_in_a_terminal(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)  # the whole foreground group: the launcher and its workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
@pytest.mark.parametrize(
    ("stop", "code", "said", "reason"),
    [
        (_sigterm_to_the_launcher, 143, "terminated (SIGTERM)", "SIGTERM"),
        (_ctrl_c_in_a_terminal, 130, "interrupted (Ctrl-C)", "KeyboardInterrupt"),
    ],
    ids=["sigterm", "ctrl-c"],
)
def test_stopping_a_local_sweep_stops_its_jobs_and_workers(
    synthetic_root: Path, tmp_path: Path, stop: Callable[[subprocess.Popen], None], code: int, said: str, reason: str
) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[launchers]'")
    sweep = tmp_path / "sweep"
    pause = ["+callbacks.pause._target_=tests.reliability.helpers.PauseAfterStep", "+callbacks.pause.step=2",
             "+callbacks.pause.marker=${hydra:runtime.output_dir}/paused", "+callbacks.pause.seconds=0.3"]  # fmt: skip
    proc = start(train_command("-m", "seed=0,1,2", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
                               f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.max_epochs=30", "test=false",
                               *pause, f"hydra.sweep.dir={sweep}"), own_group=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(list(sweep.glob("*/paused"))) < 2:  # both jobs are past step 2, mid-training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.1)
    workers = procs.children(proc.pid, skip=b"resource_tracker")
    assert len(workers) == 2, workers

    stop(proc)
    exit_code, _, err = finish(proc, timeout=180)
    assert exit_code == code, err[-3000:]
    assert f"{said}: stopping the sweep's running jobs" in err, err[-3000:]
    assert "nothing was written" not in err, err[-3000:]
    time.sleep(0.5)
    assert not [pid for pid in workers if procs.alive(pid)], err[-3000:]  # no orphan trains on
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2, runs  # the third job never started
    for run in runs:
        rec = record(run)
        assert rec["status"] == "interrupted" and rec["reason"] == reason, rec
        assert (run / "checkpoints" / "last.ckpt").is_file()
