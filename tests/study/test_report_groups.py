"""Configurations in the report: runs of one loss and m that differ in another head parameter."""

from __future__ import annotations

from pathlib import Path

from src.report.groups import group_runs
from src.report.runs import load_runs
from tests.study.fabricate import write_run


def _lsoftmax(root: Path, name: str, seed: int, floor: float, acc: float) -> None:
    params = {"m": 4, "lambda_min": floor, "lambda_base": 1000.0}
    write_run(root / name, "lsoftmax", 4, seed=seed, test_acc=acc, extra={"loss_params": params},
              config_extra={"loss.lambda_min": floor})


def test_a_head_parameter_besides_m_makes_its_own_configuration(tmp_path: Path) -> None:
    """A search over L-Softmax's lambda floor is three configurations, never one mixed mean."""
    root = tmp_path / "runs"
    for seed in range(3):
        _lsoftmax(root, f"paper_{seed}", seed, 0.0, 0.93)
        _lsoftmax(root, f"floor1_{seed}", seed, 1.0, 0.94)
    _lsoftmax(root, "floor10_0", 0, 10.0, 0.92)
    _lsoftmax(root, "floor5_0", 0, 5.0, 0.95)
    groups = group_runs(load_runs([root]))
    assert [g.label for g in groups] == ["lsoftmax m=4 lambda_min=0", "lsoftmax m=4 lambda_min=1",
                                         "lsoftmax m=4 lambda_min=5", "lsoftmax m=4 lambda_min=10"]
    assert [len(g.runs) for g in groups] == [3, 3, 1, 1]
    assert {r.value("test_acc") for r in groups[1].runs} == {0.94}
    assert all(not g.differing_settings() for g in groups)


def test_runs_that_agree_on_their_head_parameters_keep_the_plain_label(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in range(2):
        _lsoftmax(root, f"paper_{seed}", seed, 0.0, 0.93)
        write_run(root / f"softmax_{seed}", "softmax", seed=seed)
    assert [g.label for g in group_runs(load_runs([root]))] == ["softmax", "lsoftmax m=4"]

