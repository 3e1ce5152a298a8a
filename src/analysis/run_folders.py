"""Which finished runs a path names, and which checkpoint of a run is the one to evaluate.

A *run folder* holds ``config_resolved.yaml`` (and, once it has started, ``metrics.json``). A path
given to ``python -m src.evaluate`` is a checkpoint file (its run folder is the one above
``checkpoints/``), a run folder, or any folder above run folders (a sweep), searched recursively.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.errors import EvaluationError

CONFIG_NAME = "config_resolved.yaml"
RECORD_NAME = "metrics.json"


@dataclass(frozen=True)
class Target:
    """One run to evaluate; ``checkpoint`` is None for the run's own best checkpoint."""

    run_dir: Path
    checkpoint: Path | None = None


def find_targets(path: str | Path) -> list[Target]:
    """The runs ``path`` names (see the module docstring); raises ``EvaluationError`` when none."""
    path = Path(path)
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        if not (run_dir / CONFIG_NAME).is_file():
            raise EvaluationError(f"{path}: no {CONFIG_NAME} in {run_dir}, so this is not a run's checkpoint")
        return [Target(run_dir.resolve(), path.resolve())]
    if not path.is_dir():
        raise EvaluationError(f"{path}: no such file or folder")
    if (path / CONFIG_NAME).is_file():
        return [Target(path.resolve())]
    found = sorted(hit.parent.resolve() for hit in path.rglob(CONFIG_NAME) if ".hydra" not in hit.parts)
    if not found:
        raise EvaluationError(f"{path}: no run folder below it (a run folder holds {CONFIG_NAME})")
    return [Target(folder) for folder in found]


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run's training record, or {} when it is missing or unreadable."""
    try:
        record = json.loads((run_dir / RECORD_NAME).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def best_checkpoint(run_dir: Path, record: dict[str, Any]) -> Path:
    """The checkpoint validation selected: the one the record names (looked up in the run's own
    ``checkpoints/``, so a moved run folder still works), else the only ``best-*.ckpt`` there."""
    folder = run_dir / "checkpoints"
    named = record.get("best_checkpoint")
    if isinstance(named, str) and named:
        candidate = folder / Path(named).name
        if candidate.is_file():
            return candidate
    found = sorted(folder.glob("best-*.ckpt"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise EvaluationError(f"{run_dir}: no best-*.ckpt in {folder} (the validation-selected checkpoint)")
    names = ", ".join(p.name for p in found)
    raise EvaluationError(f"{run_dir}: {len(found)} best-*.ckpt ({names}) and {RECORD_NAME} names none of them; "
                          "pass the checkpoint itself")
