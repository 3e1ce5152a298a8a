"""A report appears whole or not at all (issue 27.2): a report killed, or failing, while it puts its
files in place leaves the previous report complete (or, in a folder shared with other files, no
``report.md`` at all until the next report puts the old one back), and the next report removes what
the killed one left (``.partial-*``).

The kill is a SIGKILL from inside a forked report process at its k-th move (``os.replace``,
``os.rename``, the folder exchange, ``shutil.rmtree``): nothing of the report's own clean-up runs,
exactly as for a kill from outside."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from src import report
from src.report import output
from tests.study.fabricate import write_run

INPUTS = {"a": ("softmax", None), "b": ("arcface", 0.5), "c": ("sphereface", 2.0)}
# What a study folder holds beside its report (experiments/study/: README.md, runs/), and a user's own file.
SHARED_FILES = ("README.md", "runs", "notes.csv")


@dataclass
class Reference:
    """What one input's report holds: its file names and the bytes of its CSVs (deterministic)."""

    folder: Path
    names: set[str]
    csvs: dict[str, bytes]


def _report_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name not in SHARED_FILES}  # fmt: skip


def _leftovers(out: Path) -> list[Path]:
    return sorted([*out.parent.glob(f".{out.name}.partial-*"), *out.glob(".partial-*")])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    """Three sweeps of fabricated runs (one loss each) and each one's report, built alone."""
    tmp_path = tmp_path_factory.mktemp("inputs")
    refs = {}
    for name, (loss, m) in INPUTS.items():
        for seed in range(2):
            write_run(tmp_path / "runs" / name / str(seed), loss, m, seed, 0.9 - 0.01 * seed)
        alone = tmp_path / "alone" / name
        assert report.main([str(tmp_path / "runs" / name), "--out", str(alone)]) == 0
        files = _report_files(alone)
        refs[name] = Reference(tmp_path / "runs" / name, set(files),
                               {k: v for k, v in files.items() if k.endswith(".csv")})
    return refs


def _which(out: Path, refs: dict[str, Reference]) -> str | None:
    """Which input's report ``out`` holds, checked to be that report whole; None: no report.md."""
    if not (out / "report.md").exists():
        return None
    text = (out / "report.md").read_text()
    (name,) = [n for n, ref in refs.items() if f"`{ref.folder}`" in text]
    files = _report_files(out)
    assert set(files) == refs[name].names, f"report {name} mixed with another's files"
    for csv, data in refs[name].csvs.items():
        assert files[csv] == data, f"{csv} is not report {name}'s"
    return name


def _killed_at(k: int, args: list[str]) -> int:
    """Run ``python -m src.report args`` in a forked process that SIGKILLs itself at its k-th move;
    returns its exit code (-9 when the kill came)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            calls = [0]

            def at_kth(real: Callable[..., Any]) -> Callable[..., Any]:
                def move(*a: Any, **kw: Any) -> Any:
                    calls[0] += 1
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*a, **kw)

                return move

            os.replace, os.rename, shutil.rmtree = at_kth(os.replace), at_kth(os.rename), at_kth(shutil.rmtree)
            if hasattr(output, "exchange"):
                output.exchange = at_kth(output.exchange)
            code = report.main(args)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _shared(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    study.mkdir()
    (study / "README.md").write_text("# a study\n")
    (study / "runs").mkdir()
    (study / "runs" / "note.txt").write_text("the study's runs live here\n")
    return study


@pytest.mark.parametrize("k", [1, 2, 9, 14, 15])  # shared folder: 14 moves, report.md the 14th
@pytest.mark.parametrize("layout", ["own folder", "shared folder"])
def test_a_report_killed_while_it_moves_in_leaves_a_whole_report(
    tmp_path: Path, inputs: dict[str, Reference], layout: str, k: int
) -> None:
    out = tmp_path / "out" if layout == "own folder" else _shared(tmp_path)
    assert report.main([str(inputs["a"].folder), "--out", str(out)]) == 0
    before = _report_files(out)
    assert _which(out, inputs) == "a"

    code = _killed_at(k, [str(inputs["b"].folder), "--out", str(out)])
    assert code in (-signal.SIGKILL, 0), code
    state = _which(out, inputs)  # the old report whole, the new one whole, or none at all
    if state == "a":
        assert _report_files(out) == before  # byte for byte, figures included
    if layout == "shared folder":
        assert (out / "README.md").read_text() == "# a study\n" and (out / "runs" / "note.txt").is_file()
        output.clean_leftovers(out)  # what the next report does first: a cut move is put back
        assert _which(out, inputs) in ("a", "b") and (_which(out, inputs) == "b" or _report_files(out) == before)
    else:
        assert state in ("a", "b")

    assert report.main([str(inputs["c"].folder), "--out", str(out)]) == 0  # the next report
    assert _which(out, inputs) == "c"
    assert not _leftovers(out), _leftovers(out)


@pytest.mark.parametrize(("layout", "k"), [("own folder", 1), ("own folder, no exchange", 1),
                                         ("own folder, no exchange", 2), ("shared folder", 1),
                                         ("shared folder", 2), ("shared folder", 4), ("shared folder", 14),
                                         ("own folder, staging inside", 2), ("own folder, staging inside", 9)])
def test_a_report_failing_while_it_moves_in_keeps_the_old_one(
    tmp_path: Path, inputs: dict[str, Reference], layout: str, k: int,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    out = _shared(tmp_path) if layout == "shared folder" else tmp_path / "out"
    if layout == "own folder, staging inside":  # the folder above cannot be written: built inside, moved in
        monkeypatch.setattr(output, "_new_staging", lambda out: (output._mkdir_new(out, output.PARTIAL), False))
    assert report.main([str(inputs["a"].folder), "--out", str(out)]) == 0
    before = _report_files(out)
    capsys.readouterr()
    calls = [0]

    def failing(real: Callable[..., Any]) -> Callable[..., Any]:
        def move(*a: Any, **kw: Any) -> Any:
            calls[0] += 1
            if calls[0] == k:
                raise OSError(errno.EIO, "Input/output error", str(a[-1]))
            return real(*a, **kw)

        return move

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing(os.replace))
        patch.setattr(os, "rename", failing(os.rename))
        if layout == "own folder, no exchange":  # a file system without renameat2's RENAME_EXCHANGE
            patch.setattr(output, "exchange", lambda a, b: False, raising=False)
        else:
            patch.setattr(output, "exchange", failing(getattr(output, "exchange", None)), raising=False)
        code = report.main([str(inputs["b"].folder), "--out", str(out)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and str(out) in err[0], err
    assert "Input/output error" in err[0]
    assert _which(out, inputs) == "a" and _report_files(out) == before
    assert not _leftovers(out)


def test_the_report_lists_its_files_and_a_stale_one_goes(tmp_path: Path, inputs: dict[str, Reference]) -> None:
    """``report.md`` names every file of its report with its sha256 (``output.verify`` checks them);
    a figure of the old report that the new one does not draw is removed, a file of someone else's
    is never touched."""
    for out in (tmp_path / "own", _shared(tmp_path)):
        assert report.main([str(inputs["a"].folder), "--out", str(out)]) == 0
        assert output.verify(out) == []
        (out / "notes.csv").write_text("mine\n")  # not the report's: kept, and the folder is no longer its own
        assert report.main([str(inputs["b"].folder), "--out", str(out)]) == 0
        assert output.verify(out) == [] and _which(out, inputs) == "b"
        assert not (out / "curves_softmax.png").exists() and (out / "notes.csv").read_text() == "mine\n"
        (out / "runs.csv").write_text("changed\n")
        assert output.verify(out) == [f"{out / 'runs.csv'} is not the file report.md was written with"]
        assert report.main([str(inputs["c"].folder), "--out", str(out)]) == 0
        assert _which(out, inputs) == "c" and not _leftovers(out)
