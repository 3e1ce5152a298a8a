"""What a command may do with the run folder it is aimed at, decided before anything is written.

A run folder belongs to one run. ``admit(folder, config, resume)`` reads what the folder holds and
answers with a ``Plan``:

* empty or new folder                           -> ``start``
* an unfinished run, ``resume=true``, same config -> ``resume`` from its newest whole checkpoint
  (or ``start`` again cleanly when none survives)
* a finished run, ``resume=true``, same config    -> ``done``: nothing is retrained or written
  (this is what lets the same sweep command continue a study that was stopped part-way)
* anything else -> ``RunFolderError``: one line naming the folder and what to do; the folder is
  left exactly as it was. A resume whose config differs names the keys that differ.

"Same config" compares the resolved configs (``RunFolder.read_config``) key by key, leaving out
keys that cannot change a result (``IGNORED``).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.config.moved import upgrade
from src.errors import CheckpointError, RunFolderError
from src.runs.folder import LAST_CHECKPOINT, RunFolder
from src.training.checkpointing import load_checked
from src.training.records import RunRecord
from src.utils.nested import flatten

log = logging.getLogger(__name__)
LATEST = Path(LAST_CHECKPOINT).stem  # the latest checkpoint, and the -vN copies an older run left

# Keys that may differ between the segments of one run because they cannot change its model or its
# test figure: where the data lives, what is printed or logged, which analyses run after the test
# (``src.evaluate`` reruns those on finished runs), and the resume switch itself.
IGNORED = (
    "resume", "debug", "data.root", "data.fallback", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "data.cache", "data.cache_dir", "data.memory_limit_gb",  # data=folder's decoded cache, the memory guard
    "logger",
    "analysis", "callbacks.learning_rate", "callbacks.confusion", "callbacks.embeddings", "callbacks.history",
    "callbacks.nonfinite", "callbacks.interrupt_checkpoint", "callbacks.rng_state", "checkpoint_io",
)  # fmt: skip


@dataclass
class Plan:
    action: str  # start | resume | done
    checkpoint: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)


def _relative_to_run(value: Any, run_name: str | None) -> Any:
    """A path inside the run folder, written from the folder on (``<run>/checkpoints``): the same
    run reached as ``experiments/study/runs/x`` or ``/work/repo/experiments/study/runs/x`` (another
    clone, an absolute ``hydra.sweep.dir``) is the same run."""
    if not run_name or not isinstance(value, str):
        return value
    return re.sub(r"^(?:.*[/\\])?" + re.escape(run_name) + r"(?=[/\\]|$)", "<run>", value)


def config_differences(old: dict[str, Any], new: dict[str, Any], run_name: str | None = None) -> list[str]:
    """``key: old -> new`` for every key that differs, ignoring ``IGNORED`` and their children. A
    ``_target_`` whose module moved since (``src.config.moved``) is compared by its current path.

    A key the old config does not have at all is not a difference: it was added to the code after
    the run started, and a new key's default keeps the old behaviour."""
    a = {k: _relative_to_run(v, run_name) for k, v in flatten(upgrade(copy.deepcopy(old))).items()}
    b = {k: _relative_to_run(v, run_name) for k, v in flatten(upgrade(copy.deepcopy(new))).items()}

    def ignored(key: str) -> bool:
        return key not in a or any(key == k or key.startswith(k + ".") for k in IGNORED)

    diffs = []
    for key in sorted(set(a) | set(b)):
        if ignored(key) or a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        diffs.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return diffs


def newest_checkpoint(folder: RunFolder | Path) -> Path | None:
    """The checkpoint of ``folder`` that holds the most training (highest global step).

    The latest checkpoint's name is not always the newest: an older run may have left a ``-v1``
    copy beside it. Files that cannot be read are skipped with a warning (the atomic writer never
    leaves half a file, but a disk can still damage one); on a tie the latest checkpoint wins over
    a best one, which may hold an earlier point of the same step count only if written at the same
    step.
    """
    candidates = []
    for path in RunFolder.of(folder).checkpoint_files():
        try:
            state = load_checked(path)
        except CheckpointError as err:
            log.warning("skipping an unreadable checkpoint: %s", err)
            continue
        step = state.get("global_step", -1)
        loops = state.get("loops", {})
        candidates.append((int(step) if isinstance(step, int) else -1, path.name.startswith(LATEST),
                           _batches_done(loops), path))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[2], c[1]))[3]


def _batches_done(loops: Any) -> int:
    try:
        return int(loops["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"])
    except (KeyError, TypeError, ValueError):
        return -1


def _read(read: Any) -> dict[str, Any] | None:
    try:
        return read()
    except RunFolderError as err:
        raise RunFolderError(f"{err}; move the run folder away or name another one") from None


def admit(folder: RunFolder | Path, config: dict[str, Any], resume: bool, new_ok: bool = True) -> Plan:
    """The plan for running ``config`` in ``folder``; raises ``RunFolderError`` when it must not.

    ``new_ok=False`` (a single run from the command line): ``resume=true`` in a folder without a
    run is an error, never a fresh run (a sweep's jobs pass True: rerunning the sweep starts the
    jobs that had not started)."""
    folder = RunFolder.of(folder)
    record = _read(folder.read_record)
    saved_config = _read(folder.read_config)
    has_checkpoints = bool(folder.checkpoint_files())
    if record is None and saved_config is None and not has_checkpoints:
        if resume and not new_ok:
            raise RunFolderError(f"resume=true but {folder} holds no run (no record, resolved config or checkpoint); "
                                 "name a run folder, e.g. python -m src.train --resume outputs/runs/<run>")
        return Plan("start")
    status = (record or {}).get("status", "unknown")
    if not resume:
        raise RunFolderError(
            f"run folder {folder} already holds a run (status {status}); name a new folder, or continue it with: "
            f"{folder.resume_command()}"
        )
    if saved_config is not None:
        # Both sides written from the folder on: a copied, moved or renamed run is the same run.
        diffs = config_differences(folder.portable(saved_config), folder.portable(config), run_name=folder.name)
        if diffs:
            shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
            raise RunFolderError(
                f"resume=true in {folder} with a different config ({shown}); name a new folder, or continue it with "
                f"its own overrides: {folder.resume_command()}"
            )
    if status == "finished":
        return Plan("done", record=record or {})
    checkpoint = newest_checkpoint(folder) if has_checkpoints else None
    if checkpoint is None:
        log.warning("resume=true but %s holds no readable checkpoint: starting this run from scratch", folder)
        return Plan("start", record=record or {})
    return Plan("resume", checkpoint=checkpoint, record=record or {})


def record_rejected(folder: RunFolder | Path, cfg: Any, err: BaseException) -> None:
    """In a sweep, a job whose config is rejected gets a ``failed`` record saying why, so the
    sweep's summary lists it; never over an existing run's record."""
    folder = RunFolder.of(folder)
    if folder.record.exists():
        return
    try:
        name = cfg.get("name")
    except Exception:  # the name itself may be what cannot be resolved
        name = None
    RunRecord(folder, name=name if isinstance(name, str) else None).finish("failed", reason=f"ConfigError: {err}")
