from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.training.records import RunRecord


def test_record_lifecycle_is_written_atomically(tmp_path: Path) -> None:
    record = RunRecord(tmp_path, name="x", seed=3)
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "running"
    record.finish("finished", test_acc=0.5)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["status"] == "finished" and data["test_acc"] == 0.5 and data["seed"] == 3
    assert "commit" in data and "machine" in data and data["wall_time_s"] >= 0
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary files left


def test_only_global_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    RunRecord(tmp_path / "r1", name="x")
    assert not (tmp_path / "r1" / "metrics.json").exists()
    monkeypatch.setenv("RANK", "0")
    RunRecord(tmp_path / "r0", name="x")
    assert (tmp_path / "r0" / "metrics.json").exists()
