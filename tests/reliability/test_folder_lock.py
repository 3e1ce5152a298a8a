"""src/runs/lock.py: one training process per run folder, and a lock that dies with
its process, SIGKILL included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from src.errors import RunFolderError
from src.runs.lock import hold, is_main_process
from src.training.pipeline import run
from tests.conftest import REPO

HOLDER = """
import sys, time
from pathlib import Path
from src.runs.lock import hold
with hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with hold(folder):
        assert folder.is_dir()
        refused = pytest.raises(RunFolderError, match=r"run folder .*run is in use: another process is training in it")
        with refused, hold(folder):
            pass
    with hold(folder):  # released
        pass
    assert list(folder.iterdir()) == []  # no lock file is left behind


def test_the_lock_dies_with_a_killed_process(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match="in use"), hold(folder):
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with hold(folder):  # nothing stale: the kernel dropped the lock with the process
        pass


def test_run_refuses_a_folder_in_use_and_writes_nothing(tiny_config, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with hold(folder), pytest.raises(RunFolderError, match="in use"):
        run(tiny_config(), folder)
    assert list(folder.iterdir()) == []


def test_only_the_main_process_of_a_distributed_run_locks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert is_main_process()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_main_process()
    with hold(tmp_path / "run"), hold(tmp_path / "run"):  # a worker shares its main process's folder
        pass
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
