"""Finished runs on a read-only mount (issue 27: 27.5 and a read-only finished run):
``python -m src.report`` reads them as finished and writes nothing into them; its default output
folder (``<run>/report``) being inside such a run is one line naming it and suggesting ``--out``,
exit 1, not a traceback; and ``python -m src.evaluate`` refuses in one line before computing
anything, writing nothing there.

Each test runs with a real read-only bind mount (skipped where this process may not mount) and
with a simulated one (``tests/reliability/read_only.py``), so it runs everywhere, root included."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from src import evaluate, report
from tests.reliability.read_only import read_only
from tests.study.fabricate import write_run


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


HOW = ["mount", "simulated"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("given", ["run", "sweep"])
def test_a_report_on_a_read_only_run_is_one_line_or_goes_where_out_says(
    tmp_path: Path, given: str, how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    run = write_run(sweep / "0_softmax", "softmax", None, 0, 0.9)
    folder = run if given == "run" else sweep
    before = _tree(sweep)
    with read_only(sweep, monkeypatch, how):
        assert report.main([str(folder)]) == 1
        err = _errors(capsys.readouterr().err)
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert err[0].startswith(f"error: cannot write the report to {folder / 'report'}: Read-only file system")
        assert "--out" in err[0]

        out = tmp_path / "elsewhere"
        assert report.main([str(folder), "--out", str(out)]) == 0
        assert "(1 run(s) used, 0 listed as not used)" in capsys.readouterr().out
        with (out / "runs.csv").open() as f:
            (row,) = csv.DictReader(f)
        assert row["status"] == "finished" and row["test_acc"] == "0.9"
        assert _tree(sweep) == before  # nothing written into the read-only runs
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("how", HOW)
def test_evaluate_on_a_read_only_run_is_one_line_and_writes_nothing(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = write_run(tmp_path / "run", "softmax", None, 0, 0.9)
    before = _tree(run)
    with read_only(run, monkeypatch, how):
        assert evaluate.main([str(run)]) == 1
    out = capsys.readouterr()
    err = _errors(out.err)
    assert len(err) == 1 and err[0].startswith(f"error: {run}: {run / 'evaluation.json'} cannot be written"), err
    assert "copy the run folder" in err[0]
    assert "skipped" not in out.out.replace("0 skipped", "")  # a finished run: refused, never skipped
    assert "0 run(s) evaluated, 0 skipped, 1 could not be evaluated" in out.out
    assert _tree(run) == before
