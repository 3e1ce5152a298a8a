"""``python -m src.report`` refuses a folder that does not exist (one line,
exit 1, nothing written), counts a run given twice once (with a warning), and two reports started
at the same moment never overwrite or mix with each other."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from src import report
from tests.reliability.helpers import run_env
from tests.study.fabricate import write_run


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_a_folder_that_does_not_exist_is_one_line_and_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_run(tmp_path / "sweep" / "0", "softmax", None, 0, 0.9)
    before = sorted(tmp_path.rglob("*"))
    for args in (["/does/not/exist"], [str(tmp_path / "sweep"), "/does/not/exist"],
                 [str(tmp_path / "sweep" / "0"), "/does/not/exist", "--out", str(tmp_path / "out")]):  # fmt: skip
        assert report.main(args) == 1
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: /does/not/exist does not exist"), lines
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.main([str(empty)]) == 1  # a folder with no run in it: also nothing written
    assert "no run folder" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == sorted([*before, empty])


def test_the_same_run_given_twice_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The case: a sweep run again into a second folder (DDP rank 1 re-running the command).
    for sweep in ("first", "again"):
        for seed, acc in ((0, 0.90), (1, 0.92)):
            write_run(tmp_path / sweep / str(seed), "softmax", None, seed, acc)
    write_run(tmp_path / "again" / "2", "softmax", None, 2, 0.91)  # a genuinely new seed counts
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "first"), str(tmp_path / "again"), "--out", str(out)]) == 0
    summary = _rows(out / "summary.csv")
    assert len(summary) == 1 and summary[0]["n_runs"] == "3" and summary[0]["seeds"] == "0 1 2"
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("duplicate" in w for w in warnings)
    statuses = sorted(row["status"] for row in _rows(out / "runs.csv"))
    assert statuses == ["duplicate", "duplicate", "finished", "finished", "finished"]
    assert "same config and seed" in (out / "report.md").read_text()


@pytest.mark.slow  # four report processes racing
def test_reports_started_together_never_mix(tmp_path: Path) -> None:
    for name, loss in (("a", "softmax"), ("b", "arcface")):
        for seed in range(3):
            write_run(tmp_path / name / str(seed), loss, 0.5 if loss == "arcface" else None, seed, 0.9)
    same = tmp_path / "same"

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "src.report", *args], cwd=tmp_path, env=run_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    # Two reports over several folders with the default output (a new folder each), and two into one --out.
    procs = [start(str(tmp_path / "a"), str(tmp_path / "b")) for _ in range(2)]
    procs += [start(str(tmp_path / name), "--out", str(same)) for name in ("a", "b")]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        outs.append(re.search(r"report: (\S+)/report.md", out).group(1))
    assert len({outs[0], outs[1]}) == 2  # same second, two folders
    for folder in {outs[0], outs[1]}:
        assert len(_rows(tmp_path / folder / "runs.csv")) == 6
    # One --out, two writers: whichever came last, its report.md and its CSVs belong together.
    text = (same / "report.md").read_text()
    losses = {row["loss"] for row in _rows(same / "runs.csv")}
    assert losses in ({"softmax"}, {"arcface"}) and (f"{tmp_path / 'a'}`" in text) == (losses == {"softmax"})
    assert not list(same.glob(".partial-*"))
