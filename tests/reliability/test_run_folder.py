"""src/training/admission.py: what a command may do with the run folder it is aimed at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from src.errors import RunFolderError
from src.training.admission import admit, config_differences, newest_checkpoint

CONFIG = {"seed": 0, "loss": {"_target_": "src.losses.softmax.Softmax", "label_smoothing": 0.0},
          "data": {"root": "./data", "batch_size": 128}, "resume": False}  # fmt: skip


def _run_folder(tmp_path: Path, status: str, steps: dict[str, int] | None = None) -> Path:
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": status, "val_acc_best": 0.9}))
    (folder / "config_resolved.yaml").write_text(yaml.safe_dump(CONFIG))
    for name, step in (steps or {}).items():
        torch.save({"global_step": step, "state_dict": {}}, folder / "checkpoints" / name)
    return folder


def test_differences_name_changed_and_removed_keys_and_ignore_the_rest() -> None:
    new = {**CONFIG, "seed": 1, "resume": True, "data": {"root": "/elsewhere", "batch_size": 128}, "added": 3}
    assert config_differences(CONFIG, new) == ["seed: 0 -> 1"]  # data.root, resume: ignored; added: a new key
    removed = {**CONFIG, "loss": {"_target_": "src.losses.softmax.Softmax"}}
    assert config_differences(CONFIG, removed) == ["loss.label_smoothing: 0.0 -> '<absent>'"]


def test_newest_checkpoint_is_the_one_with_most_training_not_the_name(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, "running", {"last.ckpt": 43, "last-v1.ckpt": 60, "best-epoch000.ckpt": 43})
    (folder / "checkpoints" / "last-v2.ckpt").write_bytes(b"truncated")  # unreadable: skipped
    assert newest_checkpoint(folder).name == "last-v1.ckpt"


def test_admit_starts_resumes_skips_or_refuses(tmp_path: Path) -> None:
    assert admit(tmp_path / "new", CONFIG, resume=False).action == "start"
    unfinished = _run_folder(tmp_path, "interrupted", {"last.ckpt": 5})
    plan = admit(unfinished, {**CONFIG, "resume": True}, resume=True)
    assert plan.action == "resume" and plan.checkpoint.name == "last.ckpt"
    with pytest.raises(RunFolderError, match=r"already holds a run \(status interrupted\).*--resume"):
        admit(unfinished, CONFIG, resume=False)
    with pytest.raises(RunFolderError, match=r"different config \(seed: 0 -> 7\)"):
        admit(unfinished, {**CONFIG, "seed": 7}, resume=True)


def test_a_finished_run_is_done_and_its_files_untouched(tmp_path: Path) -> None:
    folder = _run_folder(tmp_path, "finished", {"last.ckpt": 9})
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert admit(folder, CONFIG, resume=True).action == "done"
    with pytest.raises(RunFolderError, match="status finished"):
        admit(folder, CONFIG, resume=False)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_the_same_run_reached_by_another_path_is_the_same_config(tmp_path: Path) -> None:
    """A sweep started with an absolute hydra.sweep.dir and continued with the relative default
    (or from another clone) resolves its in-folder paths differently; that is not a difference."""
    old = {"callbacks": {"best_checkpoint": {"dirpath": "/work/repo/experiments/study/runs/softmax_seed0/checkpoints"}}}
    new = {"callbacks": {"best_checkpoint": {"dirpath": "experiments/study/runs/softmax_seed0/checkpoints"}}}
    assert config_differences(old, new, run_name="softmax_seed0") == []
    other = {"callbacks": {"best_checkpoint": {"dirpath": "/elsewhere/checkpoints"}}}
    assert config_differences(old, other, run_name="softmax_seed0") != []


def test_the_committed_study_run_is_already_finished_for_the_current_code() -> None:
    """The study in experiments/study/runs is continued by rerunning its sweep command with newer
    code: its finished runs must still be recognised as the same, finished run ("done"), whatever
    moved in src/ since (a moved ``_target_`` is matched by src.config.moved)."""
    from omegaconf import OmegaConf

    from tests.conftest import REPO, compose_config

    runs = REPO / "experiments" / "study" / "runs"
    folder = runs / "softmax_seed0"
    cfg = compose_config(["experiment=study", "study_config=softmax", "seed=0", f"hydra.sweep.dir={runs}"],
                         output_dir=folder)
    plan = admit(folder, OmegaConf.to_container(cfg, resolve=True), bool(cfg.resume))
    assert plan.action == "done" and plan.record["status"] == "finished"


def test_a_moved_target_is_the_same_config_and_still_builds() -> None:
    """src.config.moved: a run folder written before a module moved names the old ``_target_``; it
    compares equal to the new path, and the path it maps to is importable."""
    from hydra.utils import get_method

    from src.config.moved import MOVED, current, upgrade

    old = {**CONFIG, "scheduler": {"_target_": "src.schedules.constant", "_partial_": True},
           "checkpoint_io": {"_target_": "src.checkpointing.AtomicCheckpointIO"},
           "trainer": {"strategy": {"_target_": "src.distributed.MultiprocessDDPStrategy"}}}  # fmt: skip
    new = upgrade(json.loads(json.dumps(old)))
    assert new["scheduler"]["_target_"] == "src.training.schedules.constant"
    assert new["trainer"]["strategy"]["_target_"] == "src.training.distributed.MultiprocessDDPStrategy"
    assert config_differences(old, new) == [] and config_differences(new, old) == []
    assert config_differences(old, {**new, "scheduler": {"_target_": "src.training.schedules.one_cycle",
                                                         "_partial_": True}})  # a real change still counts
    for target in ("src.schedules.constant", "src.checkpointing.AtomicCheckpointIO",
                   "src.distributed.MultiprocessDDPStrategy"):
        assert callable(get_method(current(target)))
    assert all(old.endswith(".") and new.endswith(".") for old, new in MOVED.items())
    assert current("src.losses.softmax.Softmax") == "src.losses.softmax.Softmax"  # not moved: unchanged
