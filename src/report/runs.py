"""Reading run folders: each one as a ``Run`` (its record, its resolved config, a status and a
reason), never raising whatever the files hold; a later ``evaluation.json`` replaces the figures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.config.moved import upgrade
from src.training.run_folder import CONFIG_NAME as CONFIG
from src.training.run_folder import RECORD_NAME as RECORD
from src.utils.text import finite_number as _number

EVALUATION = "evaluation.json"
# What a later evaluation (src/analysis/evaluation.py) re-measures; it replaces the record's values.
EVALUATED_KEYS = ("test_acc", "test_acc_macro", "test_acc_leaky", "test_confusion", "class_names", "geometry",
                  "open_set", "retrieval")


@dataclass
class Run:
    folder: Path
    status: str
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    # --- identity ----------------------------------------------------------------------------
    @property
    def loss(self) -> str:
        loss = self.record.get("loss")
        if isinstance(loss, str) and loss:
            return loss
        target = str((self.config.get("loss") or {}).get("_target_", ""))
        return target.split(".")[-2] if target.count(".") >= 2 else str(self.record.get("name") or "?")

    @property
    def m(self) -> float | None:
        params = self.record.get("loss_params")
        m = params.get("m") if isinstance(params, dict) else None
        if m is None:
            m = (self.config.get("loss") or {}).get("m")
        return _number(m)

    @property
    def seed(self) -> Any:
        return self.record.get("seed", self.config.get("seed"))

    @property
    def experiment(self) -> str:
        """The recipe the run is compared under: the config's ``recipe`` when it names one (an
        experiment that extends another's grid with the same recipe, e.g. study_extended ->
        study), else the experiment it ran."""
        return str(self.config.get("recipe") or self.record.get("experiment") or "-")

    @property
    def backbone(self) -> str:
        backbone = self.record.get("backbone")
        if isinstance(backbone, str) and backbone:
            return backbone
        target = str((self.config.get("backbone") or {}).get("_target_", "?"))
        return target.split(".")[-1]

    @property
    def data(self) -> str:
        data = self.config.get("data") or {}
        name = str(self.record.get("data") or data.get("name") or "?")
        held = data.get("held_out_classes") or []
        return f"{name} without {sorted(held)}" if held else name

    @property
    def key(self) -> tuple[str, str, str, str, float | None]:
        return (self.experiment, self.data, self.backbone, self.loss, self.m)

    def value(self, name: str) -> float | None:
        return _number(self.record.get(name))

    def nested(self, section: str, name: str) -> float | None:
        block = self.record.get(section)
        return _number(block.get(name)) if isinstance(block, dict) else None

    def open_set_retrieval(self, name: str) -> float | None:
        block = self.record.get("open_set")
        retrieval = block.get("retrieval") if isinstance(block, dict) else None
        return _number(retrieval.get(name)) if isinstance(retrieval, dict) else None

    @property
    def evaluated(self) -> bool:
        """Whether the figures come from a later ``evaluation.json``."""
        return bool(self.record.get("evaluated_at"))

    @property
    def usable(self) -> bool:
        return self.status == "finished" and self.value("test_acc") is not None


def find_run_folders(paths: Iterable[str | Path]) -> tuple[list[Path], list[Run]]:
    """Run folders under ``paths`` (any folder holding metrics.json or config_resolved.yaml), and
    a ``missing`` entry for every path that does not exist."""
    found: dict[Path, None] = {}
    missing: list[Run] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            missing.append(Run(path, "missing", "no such file or folder"))
            continue
        if path.is_file():
            found[path.resolve().parent] = None
            continue
        for name in (RECORD, CONFIG):
            for hit in sorted(path.rglob(name)):
                if ".hydra" not in hit.parts:
                    found[hit.resolve().parent] = None
    return sorted(found), missing


def load_run(folder: Path) -> Run:
    """One run folder as a ``Run``: never raises, whatever the files hold."""
    config: dict[str, Any] = {}
    config_note = ""
    try:
        loaded = yaml.safe_load((folder / CONFIG).read_text())
        # Old module paths under their current names: a study continued across a move is one recipe.
        config = upgrade(loaded) if isinstance(loaded, dict) else {}
        if not isinstance(loaded, dict):
            config_note = f"; {CONFIG} is not a mapping"
    except FileNotFoundError:
        config_note = f"; no {CONFIG}"
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        config_note = f"; {CONFIG} unreadable ({type(err).__name__})"
    path = folder / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return Run(folder, "no record", f"{RECORD} missing (killed before its first write?){config_note}",
                   config=config)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return Run(folder, "corrupt", f"{RECORD} unreadable: {type(err).__name__}: {err}"[:300] + config_note,
                   config=config)
    if not isinstance(record, dict):
        return Run(folder, "corrupt", f"{RECORD} holds a {type(record).__name__}, not an object", config=config)
    record = with_evaluation(folder, record)
    status = str(record.get("status") or "unknown")
    reason = str(record.get("reason") or "")
    if status == "running":
        age = time.time() - path.stat().st_mtime
        reason = (f"record still says running (last written {age / 3600:.1f} h ago): training now, or "
                  "killed without a chance to write")
    elif status == "finished" and _number(record.get("test_acc")) is None:
        status, reason = "incomplete", "finished without a numeric test_acc (test=false, or a partial record)"
    elif status not in ("finished",) and not reason:
        reason = "no reason recorded"
    return Run(folder, status, reason + (config_note if status != "finished" else ""), record, config)


def with_evaluation(folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The training record with the figures of the run's ``evaluation.json`` (the best checkpoint
    re-tested by ``python -m src.evaluate``) in place of its own, when that file is usable."""
    try:
        evaluation = json.loads((folder / EVALUATION).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return record
    if not (isinstance(evaluation, dict) and evaluation.get("status") == "finished"
            and evaluation.get("best_checkpoint") is True and _number(evaluation.get("test_acc")) is not None):
        return record
    merged = {k: v for k, v in record.items() if k not in EVALUATED_KEYS}  # no stale figure survives
    merged.update({k: evaluation[k] for k in EVALUATED_KEYS if k in evaluation})
    merged["evaluated_at"] = evaluation.get("evaluated_at") or "unknown"
    return merged


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    folders, missing = find_run_folders(paths)
    return [load_run(folder) for folder in folders] + missing
