"""A new user's first hour (issue 24): the README's quick start and the usual mistakes, run through
the real command line (``src.cli.cli`` around ``src.train.main``, in this process so that it stays
fast) on the tiny synthetic dataset, each outcome and message checked."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import warnings
from pathlib import Path

import pytest

from src.tb.command import TAG_FILTER, first_screen_url
from src.tb.logger import stable_tag
from src.utils.quiet import quiet_third_party
from tests.conftest import REPO, TINY
from tests.conftest import train_in_process as train
from tests.reliability.faults import signal_overrides

README = REPO / "README.md"

# What a first run must not print (third-party hints and deprecations, issue 24 item 4).
NOISE = ("srun", "💡 Tip", "litlogger", "LeafSpec", "weights_only` was not set", "Directory watcher",
         "smaller than the logging interval", "not supported by the model summary")


def test_help_opens_with_the_tool_the_commands_and_the_loss_keys(monkeypatch, capsys) -> None:
    assert train(["loss=arcface", "--help"], monkeypatch) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("python -m src.train") and "trains one backbone" in first
    for command in ("python -m src.train loss=arcface loss.m=0.5",
                    "python -m src.train -m loss=sphereface loss.m=2,4,6",
                    "python -m src.evaluate", "python -m src.report"):
        assert command in text
    assert "loss=arcface, takes:" in text and "loss.m=0.5  loss.s=30.0  loss.convention=monotone" in text
    assert len(text.splitlines()) < 60  # not Hydra's config dump


@pytest.mark.parametrize(("argv", "expected"), [
    # --cfg runs the checks a training run makes before printing anything
    (["--cfg", "job", "loss=arcface", "loss.m=-2.5"], "error: loss.m=-2.5 is invalid for arcface"),
    # a key of the chosen group, misspelled: "did you mean", never a traceback
    (["loss=arcface", "loss.margin=0.5"], "did you mean loss.m?"),
    (["loss=arcface", "+loss.margin=0.5"], "did you mean loss.m?"),
    (["trainer.max_epoch=3"], "did you mean trainer.max_epochs?"),
    (["loss=arcface_typo"], "is not an option of the 'loss' config group"),
    (["loss=null"], "loss is a config group"),
])
def test_mistakes_get_one_line(argv, expected, synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    flags = argv[:2] if argv[0] == "--cfg" else []  # Hydra's flags come before the overrides
    common = [f"data.root={synthetic_root}", f"hydra.run.dir={tmp_path / 'run'}"]
    code = train([*flags, *common, *argv[len(flags):]], monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], err
    assert not (tmp_path / "run").exists()  # a rejected command leaves nothing behind


def test_a_first_run_is_quiet_complete_and_shareable(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    # TINY minus its log_every_n_steps: the default 50 must adapt to this run's 9-batch epochs.
    argv = [f"data.root={synthetic_root}", *[o for o in TINY if not o.startswith("trainer.log_every")],
            "trainer.max_epochs=1", "test=true", f"hydra.run.dir={run}"]
    old_umask = os.umask(0o022)
    try:
        with warnings.catch_warnings(record=True) as caught:
            quiet_third_party()  # what importing src.training does in a fresh process
            assert train(argv, monkeypatch) == 0
    finally:
        os.umask(old_umask)
    out = capsys.readouterr()
    printed = out.out + out.err + "\n".join(str(w.message) for w in caught)
    for noise in NOISE:
        assert noise not in printed, noise
    # The run ends with its result and its TensorBoard command (first screen: val/acc, accuracies).
    tail = [line for line in out.out.splitlines() if line.strip()][-2:]
    assert tail[0].startswith("best validation accuracy") and f"run folder {run}" in tail[0]
    assert tail[1].startswith("TensorBoard: ") and f"--logdir {run}" in tail[1]
    assert first_screen_url() in tail[1] and "val/acc" in tail[1] and "smoothing=0" in tail[1]
    # train.log ends with the same two lines, and has no third-party hint either.
    log = (run / "train.log").read_text()
    assert tail[0] in log and tail[1] in log
    assert "Tip" not in log and "weights_only" not in log
    # Step logging adapted to the short epoch: several train/loss points per epoch.
    assert "step logging every" in log
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    assert len(acc.Scalars("loss_own_scale/train")) >= 3 and len(acc.Scalars("train/lr")) >= 3
    # Every file it wrote is in the README's table of a run folder.
    assert not unlisted(run, readme_names("run folder"))[0]
    # Results and checkpoints are readable by the group and others under umask 022.
    results = [run / "metrics.json", run / "config_resolved.yaml", *sorted((run / "checkpoints").glob("*.ckpt"))]
    assert len(results) >= 4
    for path in results:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o644, f"{path.name}: {oct(mode)}"


def test_the_first_screen_shows_comparable_charts() -> None:
    """Accuracies only (every head measures them the same way), val/acc pinned on top."""
    import re

    url = first_screen_url()
    assert "pinnedCards=%5B%7B%22plugin%22%3A%22scalars%22%2C%22tag%22%3A%22val/acc%22" in url
    shown = [t for t in ("val/acc", "val/acc_macro", "train/acc", "seeds/val_acc/mean", "loss_own_scale/train",
                         "loss_own_scale/train_epoch", "loss_own_scale/val", "train/lr", "test/acc")
             if re.search(TAG_FILTER, t)]  # fmt: skip
    # The seed bands' lower/mean/upper cards (a sweep) would sort before val/acc: Custom Scalars draws them.
    assert shown == ["val/acc", "val/acc_macro", "train/acc"]
    # Each head's loss is written under a group that says so (src/tb/logger.py), away from the
    # train/ and val/ groups that hold the quantities every run measures the same way.
    assert {stable_tag(t) for t in ("train/loss", "train/loss_epoch", "val/loss")} == {
        "loss_own_scale/train", "loss_own_scale/train_epoch", "loss_own_scale/val"}
    assert url in README.read_text()  # the README's first-screen link is the one runs print


def test_lines_dropped_where_they_arise() -> None:
    """The interrupt checkpoint's weights_only note and TensorBoard's directory watcher lines
    (a sweep's end) are dropped by filters on their own loggers, nothing else."""
    quiet_third_party()

    def kept(logger: str, message: str) -> bool:
        record = logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None)
        return logging.getLogger(logger).filter(record)

    assert not kept("pytorch_lightning.trainer.connectors.checkpoint_connector",
                    "`weights_only` was not set, defaulting to `False`.")
    assert not kept("tensorboard", "Directory watcher advancing from a to b")
    assert kept("tensorboard", "something else")
    assert kept("pytorch_lightning.utilities.rank_zero", "`Trainer.fit` stopped: `max_epochs=2` reached.")



# --- the README's tables of what a run folder and a sweep folder hold (issue 24 item 5) ----------

# Names in the README's run-folder table that the tiny runs here do not write: the files of a later
# `python -m src.evaluate` (tests/core/test_evaluate.py) and of logger=mlflow (tests/core/test_loggers.py).
NOT_WRITTEN_HERE = {"evaluation.json", "evaluation_<checkpoint>.json", "mlflow.db", "mlartifacts/"}


def readme_names(table: str) -> list[str]:
    """The names in the first column of the README's table headed ``| <table> | what |``."""
    lines = README.read_text().splitlines()
    start = lines.index(f"| {table} | what |")
    names: list[str] = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`([^`]+)`", line.split(" | ", 1)[0])
    return names


def _pattern(name: str) -> re.Pattern[str]:
    """A README name as a path pattern: ``<...>`` is a value (one path part), ``*`` any text within a
    part, and a name ending in ``/`` covers everything below that folder."""
    parts = re.split(r"(<[^>]+>|\*)", name)
    body = "".join("[^/]+" if p.startswith("<") else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(body + (".*" if name.endswith("/") else ""))


def unlisted(folder: Path, names: list[str]) -> tuple[list[str], set[str]]:
    """The files below ``folder`` that no name matches, and the names that matched one."""
    patterns = {name: _pattern(name) for name in names}
    missing, matched = [], set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        hits = {name for name, pattern in patterns.items() if pattern.fullmatch(rel)}
        matched |= hits
        if not hits:
            missing.append(rel)
    return missing, matched


def test_the_readme_names_every_file_a_run_and_a_sweep_write(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    """A tiny 2-job sweep through the real command line (in this process) of 2-D runs with the CSV
    logger beside TensorBoard, so that the optional files are written too: every file in the sweep
    folder and in its job folders is named in the README's tables, and every name there is written
    (but NOT_WRITTEN_HERE). The first run above checks a default run's folder against the same table."""
    import src.sweep_summary
    from src.utils.resolvers import SWEPT_ENV

    monkeypatch.setattr(src.sweep_summary, "LAST", {})  # this sweep's counts stay out of later commands
    monkeypatch.setenv(SWEPT_ENV, "")  # set by the sweep, removed after this test
    sweep = tmp_path / "sweep"
    argv = ["-m", "loss=softmax,arcface", "backbone=small2d", "logger=[tensorboard,csv]", f"data.root={synthetic_root}",
            *TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    assert train(argv, monkeypatch) == 0, capsys.readouterr().err[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert [job.name for job in jobs] == ["0_loss=softmax", "1_loss=arcface"]

    sweep_names = readme_names("sweep folder")
    missing, matched = unlisted(sweep, sweep_names)
    assert not missing and matched == set(sweep_names), (missing, set(sweep_names) - matched)
    run_names, written = readme_names("run folder"), set()
    for job in jobs:
        missing, matched = unlisted(job, run_names)
        assert not missing, (job.name, missing)
        written |= matched
    assert set(run_names) - written == NOT_WRITTEN_HERE


# --- resume by folder, impossible to misuse (issue 24 item 1) --------------------------------------
# Each promise and the test here that keeps it, through the real command line in this process with
# signals sent from inside the run (tests/reliability/faults.py), so always at the same point. The
# same promises with real processes (a real paste into bash, real signals): the slow tests in
# tests/reliability/test_relocate.py and test_resume.py.
RESUME_PROMISES = {
    "Ctrl-C / SIGTERM print a command that, pasted, continues the run in its own folder":
        "test_a_stopped_run_continues_with_the_command_it_printed",
    "run-folder names hold no ++, , or =: one shell word and a plain Hydra value":
        "test_a_stopped_run_continues_with_the_command_it_printed",
    "resume=true / --resume aimed at a folder with no run: an error naming it, never a new run":
        "test_resume_aimed_at_no_run_is_an_error_naming_the_folder",
    "a refused folder (a finished run's command rerun) prints a command that works when pasted":
        "test_a_refused_folder_prints_a_command_that_works",
    "a folder in use by another training is refused, naming the folder and the command for later":
        "test_a_folder_in_use_is_refused_with_a_command_for_later",
}
# Two epochs of three batches, without TensorBoard and the post-test analyses (a few seconds a run).
RESUMABLE = [*TINY, "trainer.limit_train_batches=3", "analysis.geometry=false", "logger.tensorboard=null",
             "callbacks.learning_rate=null"]  # fmt: skip


def pasted(command: str, cwd: Path) -> list[str]:
    """What ``python`` receives when ``command`` is pasted verbatim into bash (``python`` there is a
    shell function that prints its arguments): bash's quoting, not ours, makes the words, which the
    test then runs as ``python -m src.train`` would."""
    shell = subprocess.run(["bash", "-c", 'python() { printf "%s\\0" "$@"; }\n' + command], cwd=cwd,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    words = shell.stdout.split("\0")[:-1]
    assert words[:3] == ["-m", "src.train", "--resume"] and len(words) == 4, words
    return words[2:]


def suggested(text: str) -> str:
    """The one command the messages in ``text`` suggest (each message ends its line with it)."""
    found = set(re.findall(r"python -m src\.train .*$", text, re.M))
    assert len(found) == 1, text[-3000:]
    return found.pop()


@pytest.fixture
def signals_as_in_a_terminal():
    """SIGINT at Python's default (a background CI job may start with it ignored), in the main
    thread, where Lightning and the interrupt checkpoint install their handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize(("name", "code", "reason"),
                         [("SIGTERM", 143, "SIGTERM"), ("SIGINT", 130, "KeyboardInterrupt")])  # Ctrl-C: SIGINT
def test_a_stopped_run_continues_with_the_command_it_printed(name, code, reason, signals_as_in_a_terminal,
                                                             synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    """Started as a new user starts a run: no folder named, overrides holding ``++``, ``=`` and
    (Hydra joins them) ``,``. Stopped during its first validation, it says how to continue; that
    line pasted into bash continues the same folder: two segments, finished, no second folder."""
    monkeypatch.chdir(tmp_path)
    argv = [f"data.root={synthetic_root}", *RESUMABLE, "loss=arcface", "loss.m=0.3", "++data.train_subset=200",
            *signal_overrides(name, "validation", 0, 0)]  # fmt: skip
    assert train(argv, monkeypatch) == code
    out = capsys.readouterr()
    runs = tmp_path / "outputs" / "runs"
    (folder,) = runs.iterdir()
    # One shell word and a plain Hydra value, whatever the overrides were (a long name is cut and hashed).
    assert re.fullmatch(r"[A-Za-z0-9._-]+", folder.name) and "_data.train_subset-200_" in folder.name, folder.name
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["reason"] == reason
    command = suggested(out.out + out.err)
    assert f"interrupted ({reason}): continue with {command}" in out.err

    assert train(pasted(command, tmp_path), monkeypatch) == 0, capsys.readouterr().err[-3000:]
    assert list(runs.iterdir()) == [folder]
    record = json.loads((folder / "metrics.json").read_text())
    assert record["status"] == "finished" and len(record["segments"]) == 2
    assert [row["epoch"] for row in record["history"]] == [0, 1] and record["global_step"] == 6


def test_resume_aimed_at_no_run_is_an_error_naming_the_folder(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    made = empty.stat().st_mtime_ns - 10**10
    os.utime(empty, ns=(made, made))  # made by the user 10 s before the commands
    for argv, folder in ((["resume=true", f"hydra.run.dir={missing}"], missing), (["--resume", str(missing)], missing),
                         ([f"resume={empty}"], empty), (["resume=true", f"hydra.run.dir={empty}"], empty)):
        code = train([f"data.root={synthetic_root}", *RESUMABLE, *argv], monkeypatch)
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and str(folder) in lines[0], (argv, lines)
        assert "no run" in lines[0] or "not a folder" in lines[0], lines
    assert not missing.exists() and not list(empty.iterdir())  # never a new run
    assert empty.is_dir()  # the user's own empty folder is kept (only one Hydra just made is removed)


def test_a_refused_folder_prints_a_command_that_works(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    folder = tmp_path / "run"
    argv = [f"data.root={synthetic_root}", *RESUMABLE, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={folder}"]
    assert train(argv, monkeypatch) == 0
    capsys.readouterr()
    # The same command again, once the run has finished: refused, with the command that continues it.
    assert train(argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"run folder {folder} already holds a run (status finished)" in err
    assert train(pasted(suggested(err), tmp_path), monkeypatch) == 0
    assert "already finished" in capsys.readouterr().out
    assert json.loads((folder / "metrics.json").read_text())["status"] == "finished"


def test_a_folder_in_use_is_refused_with_a_command_for_later(synthetic_root, tmp_path, monkeypatch, capsys) -> None:
    """A second training aimed at a folder another one holds (its lock, taken here as that training
    takes it): refused in one line naming the folder, the run left as it was; once the other has
    ended, the command the refusal names works when pasted."""
    from src.runs.folder import RunFolder

    folder = tmp_path / "run"
    argv = [f"data.root={synthetic_root}", *RESUMABLE, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={folder}"]
    assert train(argv, monkeypatch) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    with RunFolder(folder).lock():
        assert train(argv, monkeypatch) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"run folder {folder} is in use" in lines[0], lines
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    assert train(pasted(suggested(lines[0]), tmp_path), monkeypatch) == 0
    assert "already finished" in capsys.readouterr().out


def test_every_resume_promise_has_its_test() -> None:
    for promise, name in RESUME_PROMISES.items():
        assert callable(globals().get(name)), (promise, name)
