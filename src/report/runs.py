"""Reading run folders (``src.runs.folder``): each one as a ``Run`` (its record, its resolved
config, a status and a reason), never raising whatever the files hold; a later evaluation of the
best checkpoint replaces the figures unless it tested fewer images than the run's own test (the
run knows which figure it holds, ``test_source``, and on how many images, ``test_images``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from src.config import CONF_DIR
from src.errors import RunFolderError
from src.runs.folder import CONFIG, EVALUATION, RECORD, RunFolder, find_runs
from src.training.evaluation import recorded_test_images
from src.utils.text import finite_number as _number

__all__ = ["CONFIG", "EVALUATED_KEYS", "EVALUATION", "RECORD", "Run", "find_run_folders", "load_run", "load_runs"]

# What a later evaluation (src/training/evaluation.py) re-measures; it replaces the record's values.
EVALUATED_KEYS = ("test_acc", "test_acc_macro", "test_acc_leaky", "test_confusion", "class_names", "geometry",
                  "open_set", "retrieval", "test_images")


@functools.cache
def declared_recipe(experiment: Any) -> str | None:
    """The ``recipe`` that ``conf/experiment/<experiment>.yaml`` declares, for runs that started
    before their experiment declared it (their stored config lacks the key)."""
    if not isinstance(experiment, str) or not experiment.replace("_", "").isalnum():
        return None
    path = CONF_DIR / "experiment" / f"{experiment}.yaml"
    try:
        recipe = (yaml.safe_load(path.read_text()) or {}).get("recipe")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return recipe if isinstance(recipe, str) else None


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
        experiment = self.record.get("experiment")
        return str(self.config.get("recipe") or declared_recipe(experiment) or experiment or "-")

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

    def series(self, key: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of ``key`` from every history row that has both as finite numbers."""
        history = self.record.get("history")
        rows = history if isinstance(history, list) else []
        pairs = [(_number(row.get("epoch")), _number(row.get(key))) for row in rows if isinstance(row, dict)]
        return [(int(epoch), value) for epoch, value in pairs if epoch is not None and value is not None]

    def last_checkpoint_evaluation(self) -> dict[str, Any] | None:
        """What ``python -m src.evaluate`` measured on the run's last checkpoint (None when absent
        or unreadable)."""
        folder = RunFolder(self.folder)
        try:
            return folder.read_evaluation(folder.last_checkpoint)
        except RunFolderError:
            return None

    @property
    def evaluated(self) -> bool:
        """Whether the figures come from a later evaluation of the best checkpoint."""
        return bool(self.record.get("evaluated_at"))

    @property
    def test_source(self) -> str:
        """The file the test figures come from: the evaluation's or the training record."""
        return EVALUATION if self.evaluated else RECORD

    @property
    def test_images(self) -> int | None:
        """How many test images the test figures come from (None: not recorded)."""
        return recorded_test_images(self.record)

    @property
    def usable(self) -> bool:
        return self.status == "finished" and self.value("test_acc") is not None


def find_run_folders(paths: Iterable[str | Path]) -> tuple[list[Path], list[Run]]:
    """Run folders under ``paths`` (``src.runs.folder.find_runs``; a file names its own folder),
    and a ``missing`` entry for every path that does not exist."""
    found: dict[Path, None] = {}
    missing: list[Run] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            missing.append(Run(path, "missing", "no such file or folder"))
        elif path.is_file():
            found[path.resolve().parent] = None
        else:
            found.update((folder.path, None) for folder in find_runs(path))
    return sorted(found), missing


def _why(err: RunFolderError, folder: RunFolder) -> str:
    """The reader's reason without the folder's path (the report names the folder beside it)."""
    return str(err).replace(f"{folder.path}/", "")


def load_run(folder: Path) -> Run:
    """One run folder as a ``Run``: never raises, whatever the files hold."""
    run_folder = RunFolder(folder)
    config: dict[str, Any] = {}
    config_note = ""
    try:
        # Old module paths under their current names: a study continued across a move is one recipe.
        config = run_folder.read_config() or {}
        if not run_folder.config.exists():
            config_note = f"; no {CONFIG}"
    except RunFolderError as err:
        config_note = f"; {_why(err, run_folder)}"
    try:
        record = run_folder.read_record()
    except RunFolderError as err:
        return Run(folder, "corrupt", _why(err, run_folder)[:300] + config_note, config=config)
    if record is None:
        return Run(folder, "no record", f"{RECORD} missing (killed before its first write?){config_note}",
                   config=config)
    record = with_evaluation(run_folder, record)
    status = str(record.get("status") or "unknown")
    reason = str(record.get("reason") or "")
    if status == "running":
        age = time.time() - run_folder.record.stat().st_mtime
        reason = (f"record still says running (last written {age / 3600:.1f} h ago): training now, or "
                  "killed without a chance to write")
    elif status == "finished" and _number(record.get("test_acc")) is None:
        status, reason = "incomplete", "finished without a numeric test_acc (test=false, or a partial record)"
    elif status not in ("finished",) and not reason:
        reason = "no reason recorded"
    return Run(folder, status, reason + (config_note if status != "finished" else ""), record, config)


def with_evaluation(folder: RunFolder | Path, record: dict[str, Any]) -> dict[str, Any]:
    """The training record with the figures of the run's evaluation of its best checkpoint (re-tested
    by ``python -m src.evaluate``, on all of the test set) in place of its own, when that file is
    usable and tested no fewer images than the run's own test (which ``trainer.limit_test_batches``
    may have cut). The run's own figure stays beside it (``training_test_acc`` / ``_images``); an
    evaluation on fewer images is named in ``evaluation_not_used``."""
    try:
        evaluation = RunFolder.of(folder).read_evaluation()
    except RunFolderError:
        return record
    if not (isinstance(evaluation, dict) and evaluation.get("status") == "finished"
            and evaluation.get("best_checkpoint") is True and _number(evaluation.get("test_acc")) is not None):
        return record
    own, evaluated = recorded_test_images(record), recorded_test_images(evaluation)
    if own is not None and evaluated is not None and evaluated < own:
        return {**record, "evaluation_not_used": f"{EVALUATION} tested {evaluated} images, the run's own test {own}"}
    merged = {k: v for k, v in record.items() if k not in EVALUATED_KEYS}  # no stale figure survives
    merged.update({k: evaluation[k] for k in EVALUATED_KEYS if k in evaluation})
    merged["evaluated_at"] = evaluation.get("evaluated_at") or "unknown"
    merged["training_test_acc"], merged["training_test_images"] = record.get("test_acc"), own
    return merged


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    folders, missing = find_run_folders(paths)
    return [load_run(folder) for folder in folders] + missing
