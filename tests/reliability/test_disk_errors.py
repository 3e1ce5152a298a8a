"""A full disk or a read-only folder ends a run with one line (exit 1), a readable
reason in the record (``No space left on device``, not torch's ``enforce fail at
inline_container.cc``), no temporary files, and every file written before intact, so the run resumes.

The fault-injected test runs everywhere; the others use a real tmpfs / read-only bind mount and are
skipped where this process may not mount (not root, no CAP_SYS_ADMIN)."""

from __future__ import annotations

import errno
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import src.utils.io as io_module
from src.training.pipeline import run
from tests.conftest import compose_config
from tests.reliability.helpers import FULL, LEAN, QUICK, finish, record, start, train_command


@pytest.fixture
def fillable_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_write = io_module._Remembering.write

    def write(self: io_module._Remembering, data: Any) -> int:
        if FULL["on"] and isinstance(data, (bytes, bytearray, memoryview)):
            err = OSError(errno.ENOSPC, "No space left on device")
            self.error = self.error or err
            raise err
        return real_write(self, data)

    monkeypatch.setattr(io_module._Remembering, "write", write)
    FULL.update(on=False, filled=False)
    yield
    FULL.update(on=False, filled=False)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.slow  # fault injection: full and read-only disks under a real training process
def test_a_disk_filling_mid_run_keeps_the_last_whole_checkpoint_and_resumes(
    synthetic_root: Path, tmp_path: Path, fillable_disk: None
) -> None:
    folder = tmp_path / "run"
    overrides = [f"data.root={synthetic_root}", *QUICK, *LEAN, "trainer.max_epochs=2",
                 "+callbacks.disk._target_=tests.reliability.helpers.DiskFillsAtEpoch",
                 "+callbacks.disk.epoch=1"]  # fmt: skip
    with pytest.raises(OSError) as info:
        run(compose_config(overrides, output_dir=folder), folder)
    # It names the checkpoint being written (the best or the last, whichever comes first).
    assert info.value.errno == errno.ENOSPC and str(info.value.filename).endswith(".ckpt"), info.value
    rec = record(folder)
    assert rec["status"] == "failed" and rec["reason"].startswith("OSError: [Errno 28] No space left on device")
    assert "enforce fail" not in rec["reason"]
    assert [row["epoch"] for row in rec["history"]][:1] == [0]  # what was trained is in the record ...
    checkpoints = sorted(p.name for p in (folder / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and not [n for n in checkpoints if n.endswith(".tmp")]  # ... and on disk
    assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    FULL["on"] = False  # space freed: the same command with resume=true finishes the run
    resumed = run(compose_config([*overrides, "resume=true"], output_dir=folder), folder)
    assert resumed["epochs"] == 2 and record(folder)["status"] == "finished"


def _mount(args: list[str]) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}); the fault-injected test covers it")


@pytest.fixture
def mounts() -> Iterator[Callable[[list[str], Path], Path]]:
    mounted: list[Path] = []

    def mount(args: list[str], where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        _mount([*args, str(where)])
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], capture_output=True)


@pytest.mark.slow  # fault injection: full and read-only disks under a real training process
def test_a_full_disk_is_one_line_and_a_readable_record(synthetic_root: Path, tmp_path: Path, mounts) -> None:
    disk = mounts(["-t", "tmpfs", "-o", "size=1m", "tmpfs"], tmp_path / "disk")  # checkpoints are ~5 MB
    finished = disk / "finished"  # another run's files on the same disk
    finished.mkdir()
    (finished / "metrics.json").write_text('{"status": "finished", "test_acc": 0.5}\n')
    (finished / "weights.bin").write_bytes(bytes(range(256)) * 64)
    before = _digests(finished)

    folder = disk / "run"
    code, _, err = finish(start(train_command(f"data.root={synthetic_root}", *QUICK, *LEAN,
                                              f"hydra.run.dir={folder}")))  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: cannot write ") and "No space left on device" in lines[0]
    assert "Traceback" not in err
    rec = record(folder)
    assert rec["status"] == "failed" and "No space left on device" in rec["reason"], rec.get("reason")
    assert not list(disk.rglob("*.tmp"))  # no half-written file left to fill the disk further
    assert _digests(finished) == before


@pytest.mark.slow  # fault injection: full and read-only disks under a real training process
def test_a_read_only_folder_is_one_line_and_a_finished_run_stays_as_it_was(
    synthetic_root: Path, tmp_path: Path, mounts
) -> None:
    overrides = [f"data.root={synthetic_root}", *QUICK, *LEAN]
    finished = tmp_path / "finished"
    run(compose_config(overrides, output_dir=finished), finished)
    before = _digests(finished)
    empty = tmp_path / "empty"
    empty.mkdir()
    mounts(["--bind", "-o", "ro", str(finished)], finished)
    mounts(["--bind", "-o", "ro", str(empty)], empty)

    # A new run into a read-only folder, and one whose folder Hydra cannot create: one line, exit 1.
    procs = [start(train_command(*overrides, f"hydra.run.dir={folder}")) for folder in (empty, empty / "sub")]
    for proc in procs:
        code, _, err = finish(proc)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and "Read-only file system" in lines[0], err[-3000:]
    # The finished run, read-only: the same command with resume=true has nothing to do and writes nothing.
    again = run(compose_config([*overrides, "resume=true"], output_dir=finished), finished)
    assert again["status"] == "finished" and _digests(finished) == before
