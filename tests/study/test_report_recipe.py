"""The report states its recipe: epochs, training images, backbone and seeds of its rows; the
reference's figures only beside rows trained with the reference's recipe; statements that match
what was computed; axes that do not blow up a small difference."""

from __future__ import annotations

from pathlib import Path

from src.report.build import build_report
from src.report.figures import MIN_SPAN, _honest_ylim
from src.report.runs import load_runs
from tests.study.fabricate import write_run

SHORT = {"data.train_subset": 5000, "data.val_size": 500}


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_a_short_one_seed_sweep_is_not_set_beside_the_reference(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    write_run(root / "0", "softmax", seed=0, test_acc=0.80, epochs=2, config_extra=SHORT)
    write_run(root / "1", "sphereface", 2, seed=0, test_acc=0.81, epochs=2, config_extra=SHORT)
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    summary = _section(text, "Summary")
    assert "| backbone | epochs | training images |" in summary
    assert "| seed_cnn | 2 | 5,000 |" in summary
    reference = _section(text, "The reference study's claims")
    assert "Not compared with the reference study's reported figures" in reference
    assert "95.32" not in reference and "epochs 2 (reference: 50)" in reference
    significance = _section(text, "Margin losses against the baseline")
    assert "No test was possible" in significance and "3 seeds" not in significance
    assert "brief" not in text


def test_reference_recipe_rows_are_compared_and_others_listed(tmp_path: Path) -> None:
    root = tmp_path / "sweep"
    for seed in range(3):
        write_run(root / f"s{seed}", "softmax", seed=seed, test_acc=0.93 + 0.001 * seed, epochs=50,
                  config_extra={"data.val_size": 5000})
    write_run(root / "short", "sphereface", 4, seed=0, test_acc=0.9, epochs=2, config_extra=SHORT,
              experiment="quick")
    text = build_report(load_runs([root]), tmp_path / "out", [str(root)])
    reference = _section(text, "The reference study's claims")
    assert "94.15" in reference and "(n=3)" in reference
    assert "Left out of this comparison" in reference and "epochs 2 (reference: 50)" in reference
    assert "| seed_cnn | 50 | 55,000 |" in _section(text, "Summary")
    assert "No test was possible" in _section(text, "Margin losses against the baseline")


def test_holm_is_counted_over_the_comparisons_it_adjusted(tmp_path: Path) -> None:
    """A one-seed configuration is listed but not tested, so the text leaves it out of Holm's family."""
    root = tmp_path / "sweep"
    for seed in range(3):
        write_run(root / f"softmax_{seed}", "softmax", seed=seed, test_acc=0.93 + 0.001 * seed)
        write_run(root / f"sphereface_{seed}", "sphereface", 2, seed=seed, test_acc=0.92 + 0.001 * seed)
    write_run(root / "arcface_0", "arcface", 0.5, seed=0, test_acc=0.94)
    significance = _section(build_report(load_runs([root]), tmp_path / "out", [str(root)]),
                            "Margin losses against the baseline")
    assert "Holm over the 1 tested comparisons" in significance
    assert "n too small (n=1 vs 3" in significance


class _Axis:
    def set_ylim(self, low: float, high: float) -> None:
        self.limits = (low, high)


def test_accuracy_axis_spans_at_least_the_minimum() -> None:
    ax = _Axis()
    _honest_ylim(ax, [0.935, 0.937, 0.9365])
    low, high = ax.limits
    assert high - low >= MIN_SPAN and low < 0.935 and high > 0.937
    wide = _Axis()
    _honest_ylim(wide, [0.5, 0.9])
    assert wide.limits[0] < 0.5 and wide.limits[1] > 0.9 and wide.limits[1] - wide.limits[0] < 0.5
