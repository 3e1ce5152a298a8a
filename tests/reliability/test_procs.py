"""The /proc readers a local sweep's launcher uses to find and stop its workers (src/utils/procs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.utils import procs
from tests.reliability.helpers import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")

_SLEEPER = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
# A child that renames itself, says so, then waits: how a stopped sweep job tells its launcher.
_RENAMER = (
    "import sys, time; from src.utils import procs; procs.set_process_name('job-stopped');"
    " sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)"
)


def _spawn(code: str, *args: str) -> subprocess.Popen:
    """A child running ``code``, once it has said it is up; run from the repository, for ``src``."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def test_children_finds_this_process_children_and_leaves_out_the_skipped() -> None:
    plain, marked = _spawn(_SLEEPER), _spawn(_SLEEPER, "resource_tracker")
    try:
        mine = procs.children(os.getpid())
        assert plain.pid in mine and marked.pid in mine
        kept = procs.children(os.getpid(), skip=b"resource_tracker")
        assert plain.pid in kept and marked.pid not in kept
        assert procs.children(plain.pid) == []  # the sleeper has no children of its own
    finally:
        for proc in (plain, marked):
            proc.kill()
            proc.wait()


def test_alive_is_false_for_a_zombie_and_a_reaped_process() -> None:
    proc = _spawn(_SLEEPER)
    assert procs.alive(proc.pid)
    proc.kill()  # not yet reaped: a zombie until wait(), which alive() must not count as running
    deadline = time.monotonic() + 10
    while procs.alive(proc.pid):
        assert time.monotonic() < deadline, "a killed child still reads as running"
        time.sleep(0.01)
    assert Path(f"/proc/{proc.pid}").exists()  # still in the table, as a zombie
    proc.wait()
    assert not procs.alive(proc.pid) and procs.process_name(proc.pid) == "" and procs.command_line(proc.pid) == b""


def test_a_process_renames_itself_and_others_read_the_name() -> None:
    proc = _spawn(_RENAMER)
    try:
        assert procs.process_name(proc.pid) == "job-stopped"
        assert procs.process_name(os.getpid()) != "job-stopped"
    finally:
        proc.kill()
        proc.wait()
