"""``python -m src.report.by_setting``: runs split by one setting, each side against the first."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.report import by_setting
from tests.study.fabricate import write_run

BF16 = [0.930, 0.934, 0.932]
FP32 = [0.931, 0.933, 0.929]


def sweep(root: Path, extra_fp32: dict | None = None) -> Path:
    for seed, (a, b) in enumerate(zip(BF16, FP32, strict=True)):
        write_run(root / f"bf16_{seed}", seed=seed, test_acc=a, config_extra={"trainer.precision": "bf16-mixed"})
        write_run(root / f"fp32_{seed}", seed=seed, test_acc=b,
                  config_extra={"trainer.precision": "32-true", **(extra_fp32 or {})})
    write_run(root / "cut", seed=3, status="running", config_extra={"trainer.precision": "32-true"})
    return root


def test_split_by_a_config_key_with_statistics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert by_setting.main([str(sweep(tmp_path)), "--by", "trainer.precision"]) == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `trainer.precision=bf16-mixed` | 3 | 0 1 2 | 93.20 ± 0.20 | (reference)")
    fp32 = rows[1]
    # the running run is left out
    assert fp32.startswith("| `trainer.precision=32-true` | 3 | 0 1 2 | 93.10 ± 0.20 | -0.10 |")
    from scipy import stats

    p = stats.ttest_ind(FP32, BF16, equal_var=False).pvalue
    assert f"| {p:.4f} |" in fp32
    assert err == ""


def test_warns_when_runs_differ_in_more_than_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert by_setting.main([str(sweep(tmp_path, {"optimizer.lr": 2.0})), "--by", "trainer.precision"]) == 0
    assert "warning: the runs also differ in optimizer.lr: 1.0, 2.0" in capsys.readouterr().err


def test_a_record_key_when_the_config_lacks_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "a", seed=0, test_acc=0.9, extra={"threads": 1})
    write_run(tmp_path / "b", seed=1, test_acc=0.8, extra={"threads": 2})
    assert by_setting.main([str(tmp_path), "--by", "threads"]) == 0
    out = capsys.readouterr().out
    assert "| `threads=1` | 1 | 0 | 90.00 |" in out and "| `threads=2` | 1 | 1 | 80.00 | -10.00 | – | – |" in out


def test_no_usable_run_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "a", status="failed")
    assert by_setting.main([str(tmp_path), "--by", "seed"]) == 1
    assert "error: no finished run" in capsys.readouterr().err


def test_reference_value_comes_first_and_a_missing_one_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = sweep(tmp_path)
    assert by_setting.main([str(root), "--by", "trainer.precision", "--reference", "32-true"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `trainer.precision=32-true` | 3 |") and "(reference)" in rows[0]
    assert rows[1].startswith("| `trainer.precision=bf16-mixed` | 3 | 0 1 2 | 93.20 ± 0.20 | +0.10 |")
    assert by_setting.main([str(root), "--by", "trainer.precision", "--reference", "16-mixed"]) == 2
    assert "error: --reference 16-mixed: no finished run has trainer.precision=16-mixed" in capsys.readouterr().err
