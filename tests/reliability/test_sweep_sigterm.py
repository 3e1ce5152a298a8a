"""SIGTERM to a local multirun (``hydra/launcher=local_parallel``, joblib worker processes): the
launcher forwards it to its workers, each running job saves a checkpoint and records
``interrupted``, no further job starts, every worker ends and the command exits 143. Before, the
launcher died alone and its orphaned workers trained on, holding their run folders, and spun at
full CPU once their job ended."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from src.utils import procs
from tests.reliability.helpers import LEAN, TINY, finish, record, start, train_command

pytestmark = pytest.mark.slow  # real launcher worker processes


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigterm_to_a_local_sweep_stops_its_jobs_and_workers(synthetic_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[launchers]'")
    sweep = tmp_path / "sweep"
    pause = ["+callbacks.pause._target_=tests.reliability.helpers.PauseAfterStep", "+callbacks.pause.step=2",
             "+callbacks.pause.marker=${hydra:runtime.output_dir}/paused", "+callbacks.pause.seconds=0.3"]  # fmt: skip
    proc = start(train_command("-m", "seed=0,1,2", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2",
                               f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.max_epochs=30", "test=false",
                               *pause, f"hydra.sweep.dir={sweep}"))  # fmt: skip
    deadline = time.monotonic() + 240
    while len(list(sweep.glob("*/paused"))) < 2:  # both jobs are past step 2, mid-training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.1)
    workers = procs.children(proc.pid, skip=b"resource_tracker")
    assert len(workers) == 2, workers

    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, timeout=180)
    assert code == 143, err[-3000:]
    assert "stopping the sweep's running jobs" in err, err[-3000:]
    time.sleep(0.5)
    assert not [pid for pid in workers if procs.alive(pid)], err[-3000:]  # no orphan trains on
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 2, runs  # the third job never started
    for run in runs:
        rec = record(run)
        assert rec["status"] == "interrupted" and rec["reason"] == "SIGTERM", rec
        assert (run / "checkpoints" / "last.ckpt").is_file()
