"""The soak (scripts/soak.py) in short: 2 cycles of train -> random signal -> resume, then the checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow  # real processes signalled and resumed
def test_two_soak_cycles_survive(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "soak.py"), "--cycles", "2", "--seed", "1",
                           "--epochs", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["runs_lost"] == 0 and summary["runs_survived"] == summary["runs"] >= 1
