"""The report on fabricated run folders: grouping, statistics, failures, merging, claims."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from src import report
from tests.study.fabricate import FASHION, write_run

BASE = [0.900, 0.902, 0.898]
BETTER = [0.930, 0.932, 0.931]  # sphereface m=2: clearly better
SAME = [0.899, 0.903, 0.900]  # arcface m=2: no real difference


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fabricated") / "sweep"
    for seed, (b, s, a) in enumerate(zip(BASE, BETTER, SAME, strict=True)):
        # The reference's recipe (50 epochs, all training images), so its claims are compared.
        write_run(root / f"{seed}_softmax", "softmax", None, seed, b, epochs=50)
        write_run(root / f"{seed}_sphereface_m2", "sphereface", 2, seed, s, epochs=50,
                  extra={"geometry": {"max_intra_deg": 100.0 + seed, "min_inter_deg": 30.0,
                                      "mean_to_center_deg": 10.0, "criterion_holds": False}})
        write_run(root / f"{seed}_arcface_m2", "arcface", 2.0, seed, a, epochs=50)
    write_run(root / "9_arcface_m0.5", "arcface", 0.5, 0, 0.95, epochs=50)  # one seed only
    # Runs that must be listed, never used, never crash the report.
    write_run(root / "f_failed", "arcface", 4.0, 0, status="failed", extra={"reason": "ValueError: boom"})
    write_run(root / "f_running", "arcface", 4.0, 1, status="running")
    write_run(root / "f_interrupted", "arcface", 4.0, 2, status="interrupted", extra={"reason": "KeyboardInterrupt"})
    write_run(root / "f_no_test", "softmax", None, 5, test_acc=None)
    write_run(root / "f_string_acc", "softmax", None, 6, extra={"test_acc": "0.9"})
    (root / "f_corrupt").mkdir()
    (root / "f_corrupt" / "metrics.json").write_text('{"status": "finished", "test_acc": 0.9')  # cut short
    (root / "f_empty").mkdir()
    (root / "f_empty" / "metrics.json").write_text("")
    (root / "f_list").mkdir()
    (root / "f_list" / "metrics.json").write_text("[1, 2]")
    (root / "f_config_only").mkdir()
    (root / "f_config_only" / "config_resolved.yaml").write_text("seed: 3\n")
    (root / "f_bad_yaml").mkdir()
    (root / "f_bad_yaml" / "config_resolved.yaml").write_text("a: [unclosed\n")
    return root


@pytest.fixture(scope="module")
def built(sweep: Path) -> Path:
    """The report over ``sweep``, built once for the tests that only read it."""
    out = sweep.parent / "out"
    assert report.main([str(sweep), "--out", str(out)]) == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_report_groups_runs_and_lists_every_problem(built: Path) -> None:
    out = built
    text = (out / "report.md").read_text()
    summary = {row["configuration"]: row for row in read_csv(out / "summary.csv")}
    assert list(summary) == ["softmax", "sphereface m=2", "arcface m=0.5", "arcface m=2"]
    assert summary["softmax"]["n_runs"] == "3" and summary["arcface m=0.5"]["n_runs"] == "1"
    assert float(summary["softmax"]["test_acc_mean"]) == pytest.approx(np.mean(BASE))
    assert float(summary["softmax"]["test_acc_std"]) == pytest.approx(np.std(BASE, ddof=1))
    assert float(summary["sphereface m=2"]["test_acc_leaky_mean"]) == pytest.approx(np.mean(BETTER) - 0.2)
    assert float(summary["sphereface m=2"]["geometry_max_intra_deg_mean"]) == pytest.approx(101.0)
    assert float(summary["softmax"]["wall_time_s_mean"]) == pytest.approx(61.0)

    runs = {Path(row["folder"]).name: row for row in read_csv(out / "runs.csv")}
    assert len(runs) == 10 + 10  # 10 usable + 10 problem folders, each listed once
    expected = {"f_failed": "failed", "f_running": "running", "f_interrupted": "interrupted",
                "f_no_test": "incomplete", "f_string_acc": "incomplete", "f_corrupt": "corrupt", "f_empty": "corrupt",
                "f_list": "corrupt", "f_config_only": "no record", "f_bad_yaml": "no record"}
    for name, status in expected.items():
        assert runs[name]["status"] == status, name
        assert runs[name]["reason"], name
        assert name in text  # listed in the "Runs not used" table
    assert "ValueError: boom" in text and "KeyboardInterrupt" in text
    # The honest and the leaky accuracy side by side.
    assert "leaky acc (audit)" in text and "93.10 ± 0.10" in text and "73.10 ± 0.10" in text
    for section in ("## Summary", "## Margin losses against the baseline", "## The reference study's claims",
                    "## Embedding geometry", "## Test confusion", "## Runs not used", "## Validation accuracy"):
        assert section in text
    for png in ("curves_softmax.png", "curves_sphereface.png", "curves_arcface.png", "confusion_grid.png"):
        assert (out / png).stat().st_size > 1000 and f"({png})" in text


def test_significance_against_baseline(built: Path) -> None:
    out = built
    rows = {row["configuration"]: row for row in read_csv(out / "significance.csv")}
    better = rows["sphereface m=2"]
    expected = stats.ttest_ind(BETTER, BASE, equal_var=False)
    assert float(better["p"]) == pytest.approx(expected.pvalue)
    assert float(better["t"]) == pytest.approx(expected.statistic)
    assert float(better["ci_low"]) <= np.mean(BETTER) - np.mean(BASE) <= float(better["ci_high"])
    assert float(better["ci_low"]) > 0
    assert better["verdict"] == "significantly better"
    assert rows["arcface m=2"]["verdict"] == "no significant difference"
    assert rows["arcface m=0.5"]["verdict"].startswith("n too small")
    # Holm: two valid comparisons; the smaller p is doubled.
    p_better, p_same = float(better["p"]), float(rows["arcface m=2"]["p"])
    assert float(better["p_holm"]) == pytest.approx(min(1.0, 2 * min(p_better, p_same)))


def test_statistics_helpers() -> None:
    assert report.welch([1.0], [1.0, 2.0]) == (pytest.approx(math.nan, nan_ok=True),) * 2
    t, p = report.welch([0.5, 0.5], [0.4, 0.4])  # no spread, different means
    assert p == 0.0 and t > 0
    assert report.welch([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)
    assert report.holm([0.01, 0.04, math.nan, 0.03]) == pytest.approx([0.03, 0.06, math.nan, 0.06], nan_ok=True)
    low, high = report.bootstrap_ci([1.0, 1.1, 0.9, 1.0], [0.0, 0.1, -0.1, 0.0])
    assert 0.8 < low < 1.0 < high < 1.2
    assert math.isnan(report.bootstrap_ci([1.0], [2.0, 3.0])[0])
    assert report.mean_std([0.9])[0] == 0.9 and math.isnan(report.mean_std([0.9])[1])


def test_top_confused_pairs_combine_both_directions() -> None:
    m = np.diag([50, 50, 50, 50])
    m[0, 3], m[3, 0] = 7, 5  # 12 in all
    m[1, 2] = 10
    m[2, 1] = 1  # 11 in all
    m[0, 1] = 3
    pairs = report.confused_pairs(m, ["a", "b", "c", "d"], top=2)
    assert [(p["a"], p["b"], p["count"], p["a_as_b"], p["b_as_a"]) for p in pairs] == [
        ("a", "d", 12, 7, 5), ("b", "c", 11, 10, 1)]
    assert pairs[0]["share_of_errors"] == pytest.approx(12 / 26)
    assert report.confused_pairs(np.diag([3, 3]), ["a", "b"]) == []


def test_confusion_in_report_names_the_worst_pair(built: Path) -> None:
    out = built
    pairs = read_csv(out / "confused_pairs.csv")
    first = next(p for p in pairs if p["configuration"] == "softmax")
    assert {first["a"], first["b"]} == {"T-shirt/top", "Shirt"} and first["rank"] == "1"
    assert len([p for p in pairs if p["configuration"] == "softmax"]) == 5
    text = (out / "report.md").read_text()
    assert '"T-shirt/top <-> Shirt is the worst pair" holds' in text


def test_reference_claims_are_checked(built: Path) -> None:
    out = built
    text = (out / "report.md").read_text().split("## The reference study's claims")[1].split("\n## ")[0]
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "holds (significantly better" in lines["sphereface m=2"]  # reference: beats the baseline
    assert "not supported (no significant difference" in lines["arcface m=2"]  # reference: below the baseline
    assert "n too small" in lines["arcface m=0.5"]
    assert "no runs" in lines["sphereface m=4"]
    # Our fabricated baseline (90%) is far from the reported 94.15%.
    assert "does not hold" in lines["CNN + Softmax (baseline)"]


def test_report_merges_folders_and_flags_mixed_recipes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, acc in enumerate(BASE[:2]):
        write_run(a / f"run{seed}", "softmax", None, seed, acc)
    write_run(b / "run2", "softmax", None, 2, BASE[2], config_extra={"optimizer.lr": 0.5, "threads": 1})
    out = tmp_path / "out"
    assert report.main([str(a), str(b), "--out", str(out)]) == 0
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 1 and summary[0]["n_runs"] == "3" and summary[0]["seeds"] == "0 1 2"
    text = (out / "report.md").read_text()
    assert "mixes runs that differ in `optimizer.lr`" in text and "data.root" not in text.split("## Warnings")[1]
    assert "threads" not in text.split("## Warnings")[1].split("\n## ")[0]  # intra-op threads never change the recipe


def test_report_groups_by_experiment_when_several(tmp_path: Path) -> None:
    write_run(tmp_path / "r1", "softmax", None, 0, 0.9, experiment="study")
    write_run(tmp_path / "r2", "softmax", None, 0, 0.8, experiment="study_quick")
    out = tmp_path / "out"
    report.main([str(tmp_path), "--out", str(out)])
    labels = [row["configuration"] for row in read_csv(out / "summary.csv")]
    assert labels == ["softmax [study]", "softmax [study_quick]"]


def test_report_without_usable_runs_still_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "r", "softmax", None, 0, status="failed", extra={"reason": "OOM"})
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 1
    text = (out / "report.md").read_text()
    assert "No finished run" in text and "OOM" in text
    assert "no finished run" in capsys.readouterr().err


def test_default_output_folder_is_inside_the_single_input(tmp_path: Path) -> None:
    write_run(tmp_path / "sweep" / "0", "softmax", None, 0, 0.9)
    assert report.main([str(tmp_path / "sweep")]) == 0
    assert (tmp_path / "sweep" / "report" / "report.md").exists()
    # A second report over the same folder ignores the first report's files.
    assert report.main([str(tmp_path / "sweep")]) == 0
    assert len(read_csv(tmp_path / "sweep" / "report" / "runs.csv")) == 1


def test_fabricated_records_match_the_class_names() -> None:
    record = json.loads(json.dumps({"class_names": FASHION}))
    assert record["class_names"][6] == "Shirt"


def test_a_moved_component_path_is_the_same_recipe(tmp_path: Path) -> None:
    """Runs of one study started before and after a module moved (src/config/moved.py) are one
    recipe: no mixed-recipe warning, and one group."""
    write_run(tmp_path / "old", seed=0, test_acc=0.90, config_extra={"scheduler._target_": "src.schedules.constant"})
    write_run(tmp_path / "new", seed=1, test_acc=0.91,
              config_extra={"scheduler._target_": "src.training.schedules.constant"})
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Warnings" not in text and "| softmax | 2 | 0 1 |" in text
