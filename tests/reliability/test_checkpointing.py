"""Checkpoints are written atomically, hold only plain data (``weights_only=True``
loads them) and a damaged one gets a one-line error naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from src.errors import CheckpointError
from src.training.checkpointing import AtomicCheckpointIO, load_checked, save_atomic
from src.training.pipeline import run
from tests.conftest import TINY, compose_config
from tests.reliability.helpers import LEAN, record


@pytest.fixture(scope="module")
def finished_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    overrides = [f"data.root={synthetic_root}", *TINY, "loss=sphereface", "trainer.max_epochs=1",
                 "trainer.limit_train_batches=2", *LEAN]  # fmt: skip
    run(compose_config(overrides, output_dir=folder), folder)
    return folder


def test_checkpoints_load_with_weights_only(finished_run: Path) -> None:
    ckpts = sorted((finished_run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in ckpts} >= {"last.ckpt"} and any(p.name.startswith("best-") for p in ckpts)
    for path in ckpts:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # plain containers and tensors only
        assert "hyper_parameters" not in checkpoint
        assert checkpoint["state_dict"]["head.step"].item() == checkpoint["global_step"] == 2  # SphereFace's schedule
        assert checkpoint["lr_schedulers"] and checkpoint["optimizer_states"]
        assert "RNGStateCheckpoint" in checkpoint["callbacks"]
    assert not list((finished_run / "checkpoints").glob(".*.tmp"))  # no temporary file left behind


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    save_atomic({"state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()

    def half_write(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 half a checkpoint")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert os.listdir(tmp_path) == ["last.ckpt"]  # and the temporary file is gone


def test_atomic_io_round_trip(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(4.0)}, "epoch": 3}, tmp_path / "sub" / "a.ckpt")
    loaded = io.load_checkpoint(tmp_path / "sub" / "a.ckpt")
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_checkpoint_is_one_line_naming_the_file(finished_run: Path, tmp_path: Path, damage: str) -> None:
    data = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
    bad = tmp_path / "last.ckpt"
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint at all"}[damage])
    with pytest.raises(CheckpointError) as info:
        load_checked(bad)
    message = str(info.value)
    assert "\n" not in message and str(bad) in message and "damaged or truncated" in message


def test_unsafe_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "object": Path("/etc/passwd")}, path)
    with pytest.raises(CheckpointError, match=r"weights_only=True\) refuses"):
        load_checked(path)


def test_resume_skips_a_damaged_checkpoint_and_restarts_cleanly(
    finished_run: Path, synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged last.ckpt is never loaded: with no other whole checkpoint the run starts again
    cleanly, the damaged file set aside (never mixed with the new run's checkpoints)."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    data = (finished_run / "checkpoints" / "last.ckpt").read_bytes()
    (folder / "checkpoints" / "last.ckpt").write_bytes(data[: len(data) // 3])
    overrides = [f"data.root={synthetic_root}", *TINY, "loss=sphereface", "trainer.max_epochs=2", "resume=true"]
    metrics = run(compose_config(overrides, output_dir=folder), folder)
    assert "last.ckpt is damaged or truncated" in caplog.text and "starting this run from scratch" in caplog.text
    assert (folder / "checkpoints" / "unusable" / "last.ckpt").stat().st_size == len(data) // 3
    assert record(folder)["status"] == "finished" and metrics["epochs"] == 2
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == metrics["global_step"]
