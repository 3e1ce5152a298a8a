"""Issue 27.9: a second Ctrl-C stops at once and saves nothing, also when it comes while the first
one's checkpoint is being written (two Ctrl-Cs 50 ms apart used to save and then exit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from tests.reliability.helpers import LEAN, finish, record, start, train_command


def fault(armed: Path) -> list[str]:
    return ["+callbacks.fault._target_=tests.reliability.faults.SecondCtrlCWhileSaving", "+callbacks.fault.epoch=1",
            "+callbacks.fault.batch=0", f"+callbacks.fault.armed={armed}"]


@pytest.mark.slow  # two real processes, signals delivered from inside the run
def test_a_second_ctrl_c_while_saving_stops_at_once_and_keeps_the_previous_checkpoint(synthetic_root: Path,
                                                                                      tmp_path: Path) -> None:
    folder, armed = tmp_path / "run", tmp_path / "armed"
    armed.touch()
    overrides = [f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
                 *fault(armed), f"hydra.run.dir={folder}"]  # fmt: skip
    code, _, err = finish(start(train_command(*overrides)))
    assert code == 130, err[-3000:]
    rec = record(folder)
    assert rec["status"] == "interrupted" and rec["reason"] == "KeyboardInterrupt", rec
    # Nothing saved for the second Ctrl-C: last.ckpt is still epoch 0's end (3 steps), whole.
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 3)
    assert "saved" not in err.split("Ctrl-C: stopping after the current batch")[-1], err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("Traceback")] == [], err[-3000:]

    # The next start resumes from that checkpoint and finishes (the cut write's temp file is cleaned).
    code, _, err = finish(start(train_command("--resume", str(folder))))
    assert code == 0, err[-3000:]
    done = record(folder)
    assert done["status"] == "finished" and done["global_step"] == 6 and len(done["segments"]) == 2
    assert not list(folder.rglob("*.tmp"))


@pytest.mark.slow  # a real process, two signals delivered from inside the run
def test_two_ctrl_cs_back_to_back_stop_at_once(synthetic_root: Path, tmp_path: Path) -> None:
    """The second arrives while the first still waits for its batch to end: nothing is saved."""
    from tests.reliability.faults import signal_overrides

    folder = tmp_path / "run"
    code, _, err = finish(start(train_command(
        f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        *signal_overrides("SIGINT", "train", 1, 0, times=2), f"hydra.run.dir={folder}")))
    assert code == 130, err[-3000:]
    assert record(folder)["status"] == "interrupted"
    last = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (0, 3)
    assert "Traceback" not in err and f"continue with python -m src.train --resume {folder}" in err, err[-3000:]
