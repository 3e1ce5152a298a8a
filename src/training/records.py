"""The run record (``RunFolder.record``), rewritten atomically at every state change
(running -> finished | failed | interrupted), so a crashed or killed run is never silently lost."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from src.runs.folder import RunFolder
from src.utils.io import write_json_atomic
from src.utils.where import machine_line, where

EPOCH_KEYS = ("history", "val_acc_best", "best_checkpoint")  # what src.training.pipeline writes after every epoch
log = logging.getLogger(__name__)


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


def command_line() -> str:
    """The command as typed (``python -m src.train`` and its overrides), for the record. In a job
    that a launcher started in another program (a SLURM job runs submitit's), the job's overrides."""
    import shlex
    import sys

    arguments = sys.argv[1:]
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(main, "name", "src.train") != "src.train":
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            arguments = [str(o) for o in HydraConfig.get().overrides.task]
    return " ".join(["python -m src.train", *(shlex.quote(a) for a in arguments)])


def machine_description() -> str:
    """Host, CPU (lscpu's name, family/model/stepping, precision flags), threads in use, device."""
    return machine_line(where())


class RunRecord:
    """``previous``: the record of earlier segments of the same run (a resume). Its history and
    start time are kept, ``wall_time_s`` adds this segment's time to theirs, and each segment's
    commit, machine and time are listed under ``segments``."""

    def __init__(self, folder: RunFolder | str | Path, previous: dict[str, Any] | None = None,
                 **fields: Any) -> None:
        self.path = RunFolder.of(folder).record
        self.started = time.time()
        previous = dict(previous or {})
        self.earlier_wall_time = float(previous.get("wall_time_s") or 0.0)
        facts = where()  # host, SLURM ids, CPU, GPU, threads: per segment, as a requeue may move the run
        segment = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": git_commit(),
            "machine": machine_line(facts),
            "command": command_line(),
            **facts,
        }
        segments = [*previous.get("segments", []), segment] if previous else [segment]
        previous.pop("reason", None)
        self.data: dict[str, Any] = {
            **previous,
            "status": "running",
            "started_at": previous.get("started_at", segment["started_at"]),
            "commit": segment["commit"],
            "machine": segment["machine"],
            "command": segment["command"],
            **{key: facts[key] for key in ("host", "slurm", "cpu", "gpu")},
            "torch": torch.__version__,
            **fields,
            "segments": segments,
        }
        self.save()

    def update(self, **fields: Any) -> None:
        self._adopt_worker_rows()
        self.data.update(fields)
        if "threads" in fields:  # set after the record was opened: the machine line names the count in use
            self._describe_machine()
        self.data["wall_time_s"] = round(self.earlier_wall_time + time.time() - self.started, 2)
        self.save()

    def finish(self, status: str, **fields: Any) -> None:
        if status == "finished":
            self.update(status=status, **fields)
            return
        try:  # the run is ending on an error already: a full disk must not hide it behind its own
            self.update(status=status, **fields)
        except OSError as err:
            log.warning("could not mark the run record %s (%s); it keeps its last complete state", status, err)

    def _describe_machine(self) -> None:
        facts = where()
        segment = self.data["segments"][-1]
        segment.update(facts, machine=machine_line(facts))
        self.data["machine"] = segment["machine"]

    def save(self) -> None:
        # Under torchrun/SLURM every rank runs the pipeline; one writer keeps the record whole.
        if _global_rank() == 0:
            write_json_atomic(self.path, self.data)
            self._written = _mtime(self.path)

    def _adopt_worker_rows(self) -> None:
        """Under trainer=ddp_cpu the per-epoch rows are written by the rank-0 worker (a forked copy of
        this object); the main process takes them over before it writes, so that an interrupted
        run's final record keeps the epochs it finished."""
        if _mtime(self.path) in (None, getattr(self, "_written", None)):
            return
        try:
            disk = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(disk, dict) and len(disk.get("history") or []) > len(self.data.get("history") or []):
            self.data.update({key: disk[key] for key in EPOCH_KEYS if key in disk})


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0
