"""The run record: ``metrics.json`` in each run folder, rewritten atomically at every state change
(running -> finished | failed | interrupted), so a crashed or killed run is never silently lost."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from src.utils.io import write_json_atomic

RECORD_NAME = "metrics.json"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{socket.gethostname()} {platform.machine()} {torch.get_num_threads()} threads, {device}"


class RunRecord:
    def __init__(self, folder: str | Path, **fields: Any) -> None:
        self.path = Path(folder) / RECORD_NAME
        self.started = time.time()
        self.data: dict[str, Any] = {
            "status": "running",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": git_commit(),
            "machine": machine_description(),
            "torch": torch.__version__,
            **fields,
        }
        self.save()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.data["wall_time_s"] = round(time.time() - self.started, 2)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        self.update(status=status, **fields)

    def save(self) -> None:
        # Under torchrun/SLURM every rank runs the pipeline; one writer keeps the record whole.
        if _global_rank() == 0:
            write_json_atomic(self.path, self.data)


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0
