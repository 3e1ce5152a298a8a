"""The report's "do the margin losses fix softmax's confusions?" table: per-run pair counts, the
Welch test against the baseline, Holm over the table, and the one-line answer per configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.report.confusions import compare_confusions, confusion_change_section, pair_errors
from src.report.format import table
from src.report.groups import group_runs
from src.report.runs import load_runs
from tests.study.fabricate import FASHION, write_run

TSHIRT, SHIRT, PULLOVER, COAT = 0, 6, 2, 4


def matrix(tshirt_shirt: int, pullover_coat: int, jitter: int = 0) -> list[list[int]]:
    """100 test images per class; the given errors split between the two directions of each pair."""
    m = np.diag([100] * 10)
    for (a, b), errors in (((TSHIRT, SHIRT), tshirt_shirt), ((PULLOVER, COAT), pullover_coat + jitter)):
        m[a, b], m[b, a] = errors - errors // 2, errors // 2
        m[a, a] -= m[a, b]
        m[b, b] -= m[b, a]
    return m.tolist()


def study(tmp_path: Path, margin_tshirt_shirt: list[int]) -> list:
    for seed, errors in enumerate([40, 42, 41]):
        write_run(tmp_path / f"softmax_s{seed}", seed=seed, extra={"test_confusion": matrix(errors, 20, seed)})
    for seed, errors in enumerate(margin_tshirt_shirt):
        write_run(tmp_path / f"sphereface_s{seed}", loss="sphereface", m=2.0, seed=seed,
                  extra={"test_confusion": matrix(errors, 20, seed)})
    return group_runs(load_runs([tmp_path]))


def test_pair_errors_add_both_directions_and_name_a_missing_class() -> None:
    m = np.asarray(matrix(7, 3))
    assert pair_errors([m, m], FASHION, "T-shirt/top", "Shirt") == [7.0, 7.0]
    assert pair_errors([m], FASHION, "Shirt", "T-shirt/top") == [7.0]
    assert pair_errors([m], FASHION, "Pullover", "Coat") == [3.0]
    assert pair_errors([m], FASHION, "T-shirt/top", "Jacket") is None


def test_a_large_consistent_drop_is_fixed_and_noise_is_not(tmp_path: Path) -> None:
    result = compare_confusions(study(tmp_path, [10, 11, 12]))
    assert result is not None
    assert result.pairs[0] == ("T-shirt/top", "Shirt")  # the baseline's worst pair leads
    assert ("Sneaker", "Ankle boot") in result.pairs  # the brief's known pairs are always there
    by_pair = {t.pair: t for t in result.tests}
    fixed = by_pair[("T-shirt/top", "Shirt")]
    assert fixed.errors == [10.0, 11.0, 12.0] and fixed.baseline == [40.0, 42.0, 41.0]
    assert abs(fixed.change - (11 - 41) / 41) < 1e-12
    assert fixed.p_holm < 0.05 and fixed.verdict == "fewer errors"
    assert by_pair[("Pullover", "Coat")].verdict == "no significant change"  # same counts both sides
    assert all(t.p_holm >= t.p for t in result.tests)  # Holm only ever raises p


def test_section_answers_per_configuration(tmp_path: Path) -> None:
    text = "\n".join(confusion_change_section(study(tmp_path, [10, 11, 12]), table))
    assert "## Do the margin losses fix softmax's confusions?" in text
    assert "- **sphereface m=2**: fewer errors on T-shirt/top <-> Shirt (-73%)." in text


def test_overlapping_counts_are_not_called_fixed(tmp_path: Path) -> None:
    text = "\n".join(confusion_change_section(study(tmp_path, [30, 45, 39]), table))
    assert "- **sphereface m=2**: no pair significantly better than softmax." in text


def test_no_baseline_no_section(tmp_path: Path) -> None:
    write_run(tmp_path / "sphereface_s0", loss="sphereface", m=2.0, seed=0)
    assert confusion_change_section(group_runs(load_runs([tmp_path])), table) == []
