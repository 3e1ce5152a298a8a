"""Issue 27.1, 27.4 and 24.1: a stop during validation, relocatable run folders, resume by folder.

* SIGTERM at a validation batch (sent from inside the run) no longer cuts that validation short:
  the epoch gets its val/acc, its checkpoints compete for "best", and the run resumed with the
  command the warning prints (pasted through bash) ends as an uninterrupted one.
* A run folder copied under another name resumes (paths in its resolved config are ``<run>/...``),
  and so does an older one whose config holds the absolute paths of where it once was.
* ``resume=true`` aimed at a folder with no run is an error; a refused folder's message names a
  command that works when pasted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from src.runs.folder import RUN_ROOT, RunFolder
from src.runs.resume import resume_arguments
from src.training.admission import admit
from src.training.pipeline import run
from src.utils.resolvers import run_suffix
from tests.conftest import REPO, TINY, compose_config
from tests.reliability.faults import signal_overrides
from tests.reliability.helpers import LEAN, finish, record, run_env, start, train_command

HISTORY_KEYS = ("epoch", "step", "train/loss", "val/loss", "val/acc")
SMALL = [*TINY, *LEAN, "trainer.deterministic=true", "trainer.limit_train_batches=3", "data.eval_batch_size=25"]


def pasted(command: str) -> subprocess.CompletedProcess:
    """``command`` run by bash as a user would paste it (``python`` is this venv's)."""
    env = run_env()
    env["PATH"] = os.pathsep.join([str(Path(os.sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def suggested(text: str) -> str:
    """The ``python -m src.train ...`` command a message suggests (to the end of its line)."""
    found = re.search(r"python -m src\.train .*$", text, re.M)  # messages end with the command
    assert found, text[-2000:]
    return found.group(0)


def _rows(rec: dict) -> list[dict]:
    return [{k: r.get(k) for k in HISTORY_KEYS} for r in rec["history"]]


@pytest.mark.slow  # a training process signalled from inside, then resumed by the printed command
def test_sigterm_during_validation_of_the_best_epoch(synthetic_root: Path, tmp_path: Path) -> None:
    overrides = [f"data.root={synthetic_root}", *SMALL]
    expected = run(compose_config(overrides, output_dir=tmp_path / "reference"), tmp_path / "reference")
    best = Path(expected["best_checkpoint"]).name
    epoch = int(re.search(r"epoch(\d+)", best).group(1))  # the epoch validation chose: interrupt its validation
    folder = tmp_path / "stopped"
    code, _, err = finish(start(train_command(*overrides, *signal_overrides("SIGTERM", "validation", epoch, 1),
                                              f"hydra.run.dir={folder}")))  # fmt: skip
    assert code == 143, err[-3000:]
    assert record(folder)["status"] == "interrupted"
    assert [r["epoch"] for r in record(folder)["history"] if "val/acc" in r] == list(range(epoch + 1))

    done = pasted(suggested(err))  # the warning's own command, pasted
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = record(folder)
    assert resumed["status"] == "finished" and len(resumed["segments"]) == 2
    assert _rows(resumed) == _rows(expected) and all("val/acc" in r for r in resumed["history"])
    assert Path(resumed["best_checkpoint"]).name == best
    for key in ("val_acc_best", "test_acc", "global_step"):
        assert resumed[key] == expected[key], key


def _finished_run(folder: Path, synthetic_root: Path, *extra: str) -> dict:
    """A fabricated finished run (its resolved config and record), as admission reads it."""
    cfg = compose_config([f"data.root={synthetic_root}", *SMALL, *extra], output_dir=folder)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    RunFolder(folder).write_config(resolved)
    (folder / "metrics.json").write_text('{"status": "finished", "test_acc": 0.5}')
    return resolved


def test_a_copied_or_renamed_run_folder_is_the_same_run(synthetic_root: Path, tmp_path: Path) -> None:
    original = tmp_path / "runs" / "a"
    original.mkdir(parents=True)
    _finished_run(original, synthetic_root)
    assert f"{RUN_ROOT}/checkpoints" in (original / "config_resolved.yaml").read_text()
    assert str(tmp_path) not in (original / "config_resolved.yaml").read_text()
    copy = tmp_path / "bigger_disk" / "renamed"
    shutil.copytree(original, copy)
    here = OmegaConf.to_container(compose_config([f"data.root={synthetic_root}", *SMALL], output_dir=copy),
                                  resolve=True)  # fmt: skip
    assert admit(copy, here, resume=True).action == "done"
    assert RunFolder(copy).read_config()["callbacks"]["latest_checkpoint"]["dirpath"] == str(copy / "checkpoints")


def test_an_older_absolute_config_still_resumes_after_a_move(synthetic_root: Path, tmp_path: Path) -> None:
    original = tmp_path / "old"
    original.mkdir()
    resolved = _finished_run(original, synthetic_root)
    (original / "config_resolved.yaml").write_text(yaml.safe_dump(resolved))  # as before: absolute paths
    moved = tmp_path / "elsewhere" / "new-name"
    shutil.copytree(original, moved)
    here = OmegaConf.to_container(compose_config([f"data.root={synthetic_root}", *SMALL], output_dir=moved),
                                  resolve=True)  # fmt: skip
    assert admit(moved, here, resume=True).action == "done"
    assert RunFolder(moved).read_config()["callbacks"]["best_checkpoint"]["dirpath"] == str(moved / "checkpoints")


def test_resume_by_folder_replays_the_folders_own_overrides(tmp_path: Path) -> None:
    folder = tmp_path / "2026_x_loss=arcface,++data.x=1"  # an older name: =, , and ++
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("- loss=arcface\n- resume=true\n- ++data.x=1\n")
    (folder / "metrics.json").write_text('{"status": "interrupted"}')
    args = resume_arguments(["--resume", str(folder)])
    assert args == ["loss=arcface", "++data.x=1", f"hydra.run.dir='{folder}'", "resume=true"]
    assert resume_arguments([f"resume={folder}", "debug=true"])[-3] == "debug=true"
    assert resume_arguments(["resume=true", "loss=arcface"]) is None
    with pytest.raises(ValueError, match="holds no run"):
        resume_arguments(["--resume", str(tmp_path)])


def test_run_folder_names_are_shell_words_and_plain_hydra_values() -> None:
    name = run_suffix("++data.train_subset=600,loss=arcface,loss.m=0.5")
    assert name == "_data.train_subset-600_loss-arcface_loss.m-0.5"
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)


@pytest.mark.slow  # real processes: the refusal's command pasted through bash
def test_missing_folder_is_an_error_and_a_refusals_command_works(synthetic_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    code, _, err = finish(start(train_command(f"data.root={synthetic_root}", *SMALL, "resume=true",
                                              f"hydra.run.dir={missing}")))  # fmt: skip
    assert code == 2 and str(missing) in err and "holds no run" in err, err[-2000:]
    assert not missing.exists()  # never a fresh run

    folder = tmp_path / "finished"
    overrides = [f"data.root={synthetic_root}", *SMALL, "trainer.max_epochs=1", "test=false"]
    code, _, err = finish(start(train_command(*overrides, f"hydra.run.dir={folder}")))
    assert code == 0, err[-2000:]
    code, _, err = finish(start(train_command(f"hydra.run.dir={folder}")))  # aimed at a run without resume
    assert code == 2 and "already holds a run" in err, err[-2000:]
    again = pasted(suggested(err))
    assert again.returncode == 0 and "already finished" in again.stdout, again.stderr[-2000:]


def test_a_restart_from_scratch_keeps_segments_and_removes_leftovers(synthetic_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    overrides = [f"data.root={synthetic_root}", *SMALL, "trainer.max_epochs=1", "test=false"]
    _finished_run(folder, synthetic_root, "trainer.max_epochs=1", "test=false")
    earlier = {"status": "running", "segments": [{"started_at": "then", "command": "python -m src.train"}],
               "wall_time_s": 5.0, "started_at": "then", "history": [{"epoch": 0, "val/acc": 0.1}]}  # fmt: skip
    (folder / "metrics.json").write_text(__import__("json").dumps(earlier))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / ".best-epoch000.ckpt.abc.tmp").write_bytes(b"x" * 100)  # a kill mid-write
    run(compose_config([*overrides, "resume=true"], output_dir=folder), folder)
    rec = record(folder)
    assert rec["status"] == "finished" and len(rec["segments"]) == 2 and rec["segments"][0]["started_at"] == "then"
    assert rec["wall_time_s"] > 5.0 and rec["started_at"] == "then"
    assert [r["epoch"] for r in rec["history"]] == [0] and rec["history"][0]["val/acc"] != 0.1  # trained afresh
    assert not list((folder / "checkpoints").glob(".*.tmp"))
