"""The report's ranking: every configuration ordered by mean test accuracy, with its verdict against
the baseline, retrieval figures and the cost of an epoch on the machine that ran it."""

from __future__ import annotations

from pathlib import Path

from src.report.build import build_report
from src.report.groups import group_runs
from src.report.provenance import MachineLegend
from src.report.ranking import minutes_per_epoch
from src.report.runs import load_runs
from tests.study.fabricate import write_run


def _study(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed in range(3):
        machine = {"machine": "box-a"}
        write_run(root / f"softmax_{seed}", "softmax", seed=seed, test_acc=0.900 + 0.001 * seed, extra=machine)
        write_run(root / f"cosface_{seed}", "cosface", 0.35, seed=seed, test_acc=0.950 + 0.001 * seed,
                  extra={"machine": "box-b", "retrieval": {"precision_at_1": 0.9, "map_at_r": 0.8}})
        write_run(root / f"arcface_{seed}", "arcface", 0.5, seed=seed, test_acc=0.9005 + 0.001 * seed, extra=machine)
    return root


def test_ranking_orders_by_test_accuracy_and_names_the_verdicts(tmp_path: Path) -> None:
    root = _study(tmp_path)
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    section = text.split("## Which loss would you choose?")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert [r.split(" | ")[1] for r in rows] == ["cosface m=0.35", "arcface m=0.5", "softmax"]
    assert "significantly better" in rows[0] and "90.00" in rows[0]  # P@1 of cosface
    # Machines appear by short name in the table (sorted: box-a is M1, box-b M2), in full under Provenance.
    assert rows[0].rstrip().endswith("(M2) |") and rows[2].rstrip().endswith("(M1) |")
    assert "- **M2**: `box-b`" in text.split("## Provenance")[1]
    assert "(baseline)" in rows[2]
    assert "Significantly better than softmax: cosface m=0.35." in section
    assert "Not distinguishable from softmax at n = 3 seeds: arcface m=0.5." in section


def test_minutes_per_epoch_is_the_median_over_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed, wall in enumerate((60.0, 120.0, 600.0)):
        write_run(root / f"s{seed}", "softmax", seed=seed, epochs=2, extra={"wall_time_s": wall, "machine": "m"})
    (group,) = group_runs(load_runs([root]))
    assert minutes_per_epoch(group) == [("m", 1.0)]


def test_minutes_per_epoch_keeps_machines_apart(tmp_path: Path) -> None:
    """A configuration trained on two machines gets one median per machine, never a mixed one."""
    root = tmp_path / "runs"
    for seed, (wall, machine) in enumerate(((60.0, "fast"), (600.0, "slow"), (1200.0, "slow"))):
        write_run(root / f"s{seed}", "softmax", seed=seed, epochs=2, extra={"wall_time_s": wall, "machine": machine})
    runs = load_runs([root])
    (group,) = group_runs(runs)
    assert minutes_per_epoch(group) == [("fast", 0.5), ("slow", 7.5)]
    assert minutes_per_epoch(group, MachineLegend(runs)) == [("M1", 0.5), ("M2", 7.5)]


def test_an_experiment_that_declares_the_study_recipe_is_compared_with_it(tmp_path: Path) -> None:
    """study_extended's runs (even ones whose stored config predates its ``recipe`` key) share
    experiment=study's baseline: conf/experiment/study_extended.yaml declares ``recipe: study``."""
    root = tmp_path / "runs"
    for seed in range(3):
        write_run(root / f"softmax_{seed}", "softmax", seed=seed, test_acc=0.90 + 0.001 * seed)
        write_run(root / f"cosface_{seed}", "cosface", 0.35, seed=seed, test_acc=0.95 + 0.001 * seed,
                  experiment="study_extended")
    write_run(root / "quick", "cosface", 0.35, seed=0, test_acc=0.5, experiment="study_quick")
    groups = group_runs(load_runs([root]))
    labels = [g.label for g in groups]
    assert "cosface m=0.35 [study]" in labels and "cosface m=0.35 [study_quick]" in labels
    (extended,) = [g for g in groups if g.label == "cosface m=0.35 [study]"]
    assert len(extended.runs) == 3
