"""The run folder: the one place that knows its layout, and the readers everyone else asks.

One run trains in one folder (``hydra.run.dir``, or a job's folder under ``hydra.sweep.dir``):

* ``metrics.json`` (``RECORD``): the run record, rewritten at every state change
  (``src.training.records``);
* ``config_resolved.yaml`` (``CONFIG``): the resolved config the run was admitted with;
* ``checkpoints/`` (``CHECKPOINTS``): Lightning's ``ModelCheckpoint`` files
  (``conf/callbacks/default.yaml``: ``best-*.ckpt`` chosen on validation, ``last.ckpt``), and
  ``checkpoints/unusable/`` for unreadable ones a fresh start set aside;
* ``evaluation.json`` (``EVALUATION``): the best checkpoint re-tested by ``python -m src.evaluate``;
  ``evaluation_<checkpoint>.json`` for any other checkpoint;
* ``.hydra/``: Hydra's copies of the config, its own settings and the overrides;
* TensorBoard event files (``EVENT_FILES``) under the logger's folder;
* the lock: an ``flock`` on the folder itself while a run trains (``src.runs.lock``), no file.

A run folder can be copied, moved or mounted read-only: paths inside it are written into its
resolved config as ``<run>/...`` (``RUN_ROOT``) and read back under the folder's current path; an
older config that holds the absolute paths of where it once was is read back the same way.

``RunFolder`` is one such folder: its files by name, its readers and its few writes. The readers
return None for a file that is not there yet and raise a one-line ``RunFolderError`` for one that
cannot be read; each caller decides what an unreadable file means to it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.config.moved import upgrade
from src.errors import EvaluationError, RunFolderError
from src.runs.lock import hold
from src.utils.io import write_text_atomic

log = logging.getLogger(__name__)

RECORD = "metrics.json"
CONFIG = "config_resolved.yaml"
CHECKPOINTS = "checkpoints"
UNUSABLE = "unusable"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINTS = "best-*.ckpt"
EVALUATION = "evaluation.json"
HYDRA = ".hydra"
HYDRA_COPIES = {"config": "config.yaml", "hydra": "hydra.yaml", "overrides": "overrides.yaml"}
EVENT_FILES = "events.out.tfevents.*"
# 2-D / 3-D runs: the test embeddings, labels, predictions and class directions (src.callbacks.embeddings).
TEST_EMBEDDINGS = "test_embeddings.npz"
# A path inside the run folder, as its resolved config writes it: relative to the folder itself.
RUN_ROOT = "<run>"
# Keys that name a folder inside the run in every config (conf/callbacks/default.yaml): an older,
# absolute config tells where its run folder then was by them.
_OWN_PATHS = (("callbacks", "latest_checkpoint", "dirpath"), ("callbacks", "best_checkpoint", "dirpath"))


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    return value


def _under(value: str, roots: list[str]) -> str:
    """``value`` with a leading ``root`` (any of ``roots``) replaced by ``RUN_ROOT``."""
    for root in roots:
        if value == root or value.startswith(root + "/"):
            return RUN_ROOT + value[len(root):]
    return value


def _former_root(config: dict[str, Any]) -> str | None:
    """Where an older config's run folder was, from its own checkpoint folder's absolute path."""
    for keys in _OWN_PATHS:
        node: Any = config
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and os.path.isabs(node) and Path(node).name == CHECKPOINTS:
            return str(Path(node).parent)
    return None


def _parse_json(text: str) -> Any:
    return json.loads(text)


def _read_mapping(path: Path, parse: Callable[[str], Any]) -> dict[str, Any] | None:
    """``parse`` of ``path``'s text: None when absent; ``RunFolderError`` when it cannot be read
    or holds something other than a mapping."""
    try:
        data = parse(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, yaml.YAMLError) as err:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise RunFolderError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} cannot be read (it holds a {type(data).__name__}, not a mapping)")
    return data


@dataclass(frozen=True)
class RunFolder:
    """One run's folder; ``str()`` and ``os.fspath()`` give its path."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, folder: RunFolder | str | Path) -> RunFolder:
        return folder if isinstance(folder, RunFolder) else cls(Path(folder))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> RunFolder:
        """The run a checkpoint file belongs to (the folder above ``checkpoints/``, else its own)."""
        parent = Path(checkpoint).parent
        return cls(parent.parent if parent.name == CHECKPOINTS else parent)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # --- layout ------------------------------------------------------------------------------
    @property
    def record(self) -> Path:
        return self.path / RECORD

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    def evaluation(self, checkpoint: str | Path | None = None) -> Path:
        """Where ``python -m src.evaluate`` writes its result: ``evaluation.json`` for the best
        checkpoint (``None``), ``evaluation_<stem>.json`` for any other."""
        if checkpoint is None:
            return self.path / EVALUATION
        stem = Path(EVALUATION).stem
        return self.path / f"{stem}_{Path(checkpoint).stem}{Path(EVALUATION).suffix}"

    def hydra_copy(self, which: str) -> Path:
        """Hydra's copy ``which`` (config | hydra | overrides) in ``.hydra/``."""
        return self.path / HYDRA / HYDRA_COPIES[which]

    def checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob("*.ckpt")) if self.checkpoints.is_dir() else []

    def holds_run(self) -> bool:
        """Whether a run has started here (a record, a resolved config or a checkpoint)."""
        return self.record.exists() or self.config.exists() or bool(self.checkpoint_files())

    # --- readers -----------------------------------------------------------------------------
    def read_record(self) -> dict[str, Any] | None:
        return _read_mapping(self.record, _parse_json)

    def readable_record(self) -> dict[str, Any]:
        """The record, or {} when it is missing or cannot be read."""
        try:
            return self.read_record() or {}
        except RunFolderError:
            return {}

    def read_config(self) -> dict[str, Any] | None:
        """The resolved config, with ``_target_`` paths that moved since under their current names
        (``src.config.moved``), so an old run builds and compares as the component it meant, and
        paths inside the run under the folder's current path (wherever it was written)."""
        config = _read_mapping(self.config, yaml.safe_load)
        if config is None:
            return None
        former = _former_root(config)
        portable = _map_strings(config, lambda v: _under(v, [former])) if former else config
        here = str(self.path.absolute())
        return upgrade(_map_strings(portable, lambda v: here + v[len(RUN_ROOT):] if v.startswith(RUN_ROOT) else v))

    def portable(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with every path inside this folder written from the folder on (``<run>/...``)."""
        roots = sorted({str(self.path), str(self.path.absolute()), os.path.realpath(self.path)}, key=len, reverse=True)
        return _map_strings(config, lambda v: _under(v, roots))

    def resume_command(self) -> str:
        """The command that continues this run, as one shell line that works when pasted."""
        return f"python -m src.train --resume {shlex.quote(str(self.path))}"

    def read_evaluation(self, checkpoint: str | Path | None = None) -> dict[str, Any] | None:
        return _read_mapping(self.evaluation(checkpoint), _parse_json)

    def best_checkpoint(self, record: dict[str, Any]) -> Path:
        """The checkpoint validation selected: the one the record names (looked up in this folder's
        own ``checkpoints/``, so a moved run folder still works), else the only ``best-*.ckpt``."""
        named = record.get("best_checkpoint")
        if isinstance(named, str) and named:
            candidate = self.checkpoints / Path(named).name
            if candidate.is_file():
                return candidate
        found = sorted(self.checkpoints.glob(BEST_CHECKPOINTS))
        if len(found) == 1:
            return found[0]
        if not found:
            raise EvaluationError(f"{self}: no {BEST_CHECKPOINTS} in {self.checkpoints} (the validation-selected "
                                  "checkpoint)")
        names = ", ".join(p.name for p in found)
        raise EvaluationError(f"{self}: {len(found)} {BEST_CHECKPOINTS} ({names}) and {RECORD} names none of "
                              "them; pass the checkpoint itself")

    # --- writes ------------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        """The resolved config, relocatable: paths inside the folder as ``<run>/...``."""
        write_text_atomic(self.config, yaml.safe_dump(self.portable(config), sort_keys=False, allow_unicode=True))

    def set_aside_checkpoints(self) -> int:
        """Move every checkpoint into ``checkpoints/unusable/``: a run started afresh beside
        unreadable ones must never mix with them (nor resume pick them). Returns how many moved."""
        stale = self.checkpoint_files()
        if stale:
            target = self.checkpoints / UNUSABLE
            target.mkdir(exist_ok=True)
            for path in stale:
                path.replace(target / path.name)
            log.warning("moved %d unusable checkpoint(s) to %s", len(stale), target)
        return len(stale)

    def remove_leftovers(self, min_age_s: float = 60.0) -> list[Path]:
        """Delete the temporary files of writes a kill cut short (``.<name>.*.tmp``, the atomic
        writer's): any in ``checkpoints/`` (only the training that holds the lock writes there), the
        others once ``min_age_s`` old (``src.evaluate`` writes without the lock). Call under the lock."""
        import time

        removed = []
        now = time.time()
        for where, age in ((self.checkpoints, 0.0), (self.path, min_age_s)):
            for tmp in where.glob(".*.tmp") if where.is_dir() else []:
                try:
                    if tmp.is_file() and now - tmp.stat().st_mtime >= age:
                        tmp.unlink()
                        removed.append(tmp)
                except OSError:  # a read-only folder keeps them; nothing reads them
                    continue
        if removed:
            log.info("removed %d leftover temporary file(s) of interrupted writes in %s", len(removed), self)
        return removed

    def lock(self) -> AbstractContextManager[None]:
        """Create the folder and hold it for this process while the block runs (``src.runs.lock``)."""
        return hold(self.path)


# What makes a folder a run's: its record, its resolved config, or Hydra's copy of its overrides (a
# job that ended before its run started).
_MARKS = (RECORD, CONFIG, f"{HYDRA}/{HYDRA_COPIES['overrides']}")


def find_runs(root: str | Path) -> list[RunFolder]:
    """``root`` and every run folder below it (resolved, sorted)."""
    found: set[Path] = set()
    for mark in _MARKS:
        depth = mark.count("/") + 1  # the run folder holds the mark this many levels up
        for hit in Path(root).rglob(mark):
            folder = hit.resolve().parents[depth - 1]
            if HYDRA not in folder.parts:
                found.add(folder)
    return [RunFolder(folder) for folder in sorted(found)]


def event_folders(root: str | Path, skip_suffix: str = "") -> list[Path]:
    """Folders at or below ``root`` holding TensorBoard event files (files ending in
    ``skip_suffix`` not counted), sorted."""
    hits = Path(root).rglob(EVENT_FILES)
    return sorted({p.parent for p in hits if not (skip_suffix and p.name.endswith(skip_suffix))})
