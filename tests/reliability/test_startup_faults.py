"""Issue 27.5 and the start-up probes: what happens before a run's training begins.

* ``optimizer.lr=1e300`` (an overflow in Adam's first step), ``trainer.precision=64`` (a dtype error
  after training) and a callback ``_target_`` that cannot be imported (on a new run or a resume) are
  refused by the config pass: one line, exit 2, no traceback; a new run leaves no folder and a
  resumed run's record is left byte for byte (no ``failed``, no new segment).
* SIGTERM during a resume's start-up (while the callbacks are built; once the checkpoint is read,
  before Lightning's own handler is installed) records ``interrupted``, and the next resume runs.
* Ctrl-C during Python's imports (before the run starts) is one line and exit 130, not a traceback.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY, train_in_process
from tests.reliability.faults import armed_signal_overrides, signal_overrides
from tests.reliability.helpers import LEAN, QUICK, finish, record, run_env, start, train_command


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.parametrize(("override", "expected"), [
    ("optimizer.lr=1e300", "optimizer.lr=1e+300 is invalid: must be a finite learning rate > 0 and <= 100"),
    ("optimizer.lr=101", "optimizer.lr=101 is invalid: must be a finite learning rate > 0 and <= 100"),
    ("trainer.precision=64", "trainer.precision='64' is invalid: "),
    ("trainer.precision=64-true", "trainer.precision='64-true' is invalid: "),
    ("trainer.precision=bf16-true", "trainer.precision='bf16-true' is invalid: "),
])
def test_refused_before_training_in_one_line(override: str, expected: str, synthetic_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "run"
    code = train_in_process([f"data.root={synthetic_root}", *QUICK, *LEAN, override, f"hydra.run.dir={folder}"],
                            monkeypatch)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and expected in line, line
    if "precision" in override:  # what is allowed is listed
        assert "auto, 32-true, bf16-mixed" in line, line
    assert not folder.exists()  # refused before anything was written


def test_the_largest_allowed_learning_rate_passes(synthetic_root: Path) -> None:
    from src.training.validate import check_config
    from tests.conftest import compose_config

    check_config(compose_config([f"data.root={synthetic_root}", *TINY, "optimizer=sgd", "optimizer.lr=100"]))


def _plugin(tmp_path: Path, name: str) -> Path:
    """A callback module importable only while its folder is on ``sys.path`` (a module renamed or an
    extra uninstalled between two segments of a run)."""
    plug = tmp_path / "plug"
    plug.mkdir(exist_ok=True)
    (plug / f"{name}.py").write_text("import pytorch_lightning as pl\n\n\nclass Noop(pl.Callback):\n    pass\n")
    return plug


def _forget(plug: Path, name: str) -> None:
    sys.path.remove(str(plug))
    sys.modules.pop(name, None)
    importlib.invalidate_caches()


@pytest.mark.parametrize("how", ["--resume", "resume=true"])
def test_a_resume_whose_callback_cannot_be_imported_leaves_the_record(
        how: str, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    name = f"startup_probe_callback_{how.strip('-').replace('=', '_')}"
    plug = _plugin(tmp_path, name)
    monkeypatch.syspath_prepend(str(plug))
    folder = tmp_path / "run"
    overrides = [f"data.root={synthetic_root}", *QUICK, *LEAN, "test=false", f"+callbacks.extra._target_={name}.Noop",
                 f"hydra.run.dir={folder}"]  # fmt: skip
    assert train_in_process(overrides, monkeypatch) == 0
    stopped = {**record(folder), "status": "interrupted", "reason": "SIGTERM"}  # as a stop leaves it
    (folder / "metrics.json").write_text(json.dumps(stopped))
    before = (folder / "metrics.json").read_bytes()
    _forget(plug, name)
    capsys.readouterr()

    args = ["--resume", str(folder)] if how == "--resume" else [*overrides, "resume=true"]
    code = train_in_process(args, monkeypatch)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and f"callbacks.extra._target_='{name}.Noop' is invalid: cannot be imported" in line, line
    assert (folder / "metrics.json").read_bytes() == before  # still interrupted, no new segment


def test_a_new_run_whose_callback_cannot_be_imported_leaves_nothing(
        synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    folder = tmp_path / "run"
    code = train_in_process([f"data.root={synthetic_root}", *QUICK, *LEAN, "+callbacks.extra._target_=no_such.Thing",
                             f"hydra.run.dir={folder}"], monkeypatch)  # fmt: skip
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "callbacks.extra._target_='no_such.Thing' is invalid: cannot be imported" in line, line
    assert not folder.exists()


@pytest.mark.slow  # four short training processes: stopped, twice stopped while starting, then finished
def test_sigterm_during_a_resumes_start_up_records_interrupted(synthetic_root: Path, tmp_path: Path) -> None:
    folder, armed = tmp_path / "run", tmp_path / "armed"
    overrides = [f"data.root={synthetic_root}", *TINY, *LEAN, "trainer.limit_train_batches=2", "test=false",
                 *signal_overrides("SIGTERM", "validation", 0, 0), *armed_signal_overrides("SIGTERM", armed)]
    code, _, err = finish(start(train_command(*overrides, f"hydra.run.dir={folder}")))
    assert code == 143 and record(folder)["status"] == "interrupted", err[-3000:]  # stopped at epoch 0's end
    checkpoint = (folder / "checkpoints" / "last.ckpt").read_bytes()

    for segments, point in enumerate(("init", "load"), start=2):
        armed.write_text(point)
        code, _, err = finish(start(train_command("--resume", str(folder))))
        assert not armed.exists(), err[-3000:]  # the signal was sent at that point
        assert code == 143 and "Traceback" not in err, err[-3000:]
        rec = record(folder)
        assert rec["status"] == "interrupted" and rec["reason"] == "SIGTERM", rec
        assert len(rec["segments"]) == segments and [r["epoch"] for r in rec["history"]] == [0]
        assert (folder / "checkpoints" / "last.ckpt").read_bytes() == checkpoint  # nothing saved while starting

    code, _, err = finish(start(train_command("--resume", str(folder))))
    assert code == 0, err[-3000:]
    rec = record(folder)
    assert rec["status"] == "finished" and len(rec["segments"]) == 4 and [r["epoch"] for r in rec["history"]] == [0, 1]


SITECUSTOMIZE = '''\
import os, signal, sys

class _SigintAtImport:
    """Test-only: Ctrl-C (SIGINT, or the signal STARTUP_PROBE_SIGNAL names) to this process when the
    module named in the environment is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("STARTUP_PROBE_SIGINT_AT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, os.environ.get("STARTUP_PROBE_SIGNAL", "SIGINT")))
        return None

sys.meta_path.insert(0, _SigintAtImport())
'''


@pytest.mark.parametrize("module", ["hydra", "numpy", "pytorch_lightning"])
def test_ctrl_c_during_the_imports_is_one_line_and_exit_130(module: str, synthetic_root: Path, tmp_path: Path) -> None:
    """``numpy``: the lazy import that once ended in a RecursionError; ``pytorch_lightning``: after Hydra
    has made the run folder (removed again, as it is still empty)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = run_env()
    env["PYTHONPATH"] = f"{hook}:{env['PYTHONPATH']}"
    env["STARTUP_PROBE_SIGINT_AT"] = module
    folder = tmp_path / "run"
    proc = subprocess.run(train_command(f"data.root={synthetic_root}", *QUICK, *LEAN, f"hydra.run.dir={folder}"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Ctrl-C" in lines[0], proc.stderr[-3000:]
    assert not folder.exists()


@pytest.mark.parametrize("module", ["numpy", "pytorch_lightning"])
def test_sigterm_during_the_imports_is_one_line_and_exit_143(module: str, synthetic_root: Path,
                                                             tmp_path: Path) -> None:
    """As Ctrl-C above: a SIGTERM before the run started (a scheduler's, a soak's) was the default
    action, a silent death by signal (exit -15); now one line and 143, and no folder left."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**run_env(), "STARTUP_PROBE_SIGINT_AT": module, "STARTUP_PROBE_SIGNAL": "SIGTERM"}
    env["PYTHONPATH"] = f"{hook}:{env['PYTHONPATH']}"
    folder = tmp_path / "run"
    proc = subprocess.run(train_command(f"data.root={synthetic_root}", *QUICK, *LEAN, f"hydra.run.dir={folder}"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 143 and len(lines) == 1 and "SIGTERM" in lines[0], proc.stderr[-3000:]
    assert not folder.exists()
