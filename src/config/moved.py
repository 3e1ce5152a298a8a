"""Component paths (``_target_``) that moved, so that run folders written before the move still work.

A run folder keeps the resolved config it was started with (``src.runs.folder.RunFolder.config``),
``_target_`` paths included. When a module moves, that old path must still mean the same component: a study
continued with the same command by newer code must find its finished runs the same ("already
finished", ``src.training.admission.admit``), and ``python -m src.evaluate`` must still build an
old run. ``MOVED`` maps each old module prefix to its new one; ``current`` rewrites one path and
``upgrade`` every ``_target_`` in a stored config. Add a line here whenever a module named by a
``_target_`` in conf/ moves.
"""

from __future__ import annotations

from typing import Any

# old module prefix -> new module prefix
MOVED: dict[str, str] = {
    "src.schedules.": "src.training.schedules.",
    "src.checkpointing.": "src.training.checkpointing.",
    "src.distributed.": "src.training.distributed.",
}


def current(target: Any) -> Any:
    """``target`` under its current module path (unchanged when it did not move or is not a string)."""
    if isinstance(target, str):
        for old, new in MOVED.items():
            if target.startswith(old):
                return new + target[len(old):]
    return target


def upgrade(config: Any) -> Any:
    """Every ``_target_`` in ``config`` (plain dicts and lists, as read from YAML) rewritten by
    ``current``, in place; returns ``config``."""
    if isinstance(config, dict):
        for key, value in config.items():
            config[key] = current(value) if key == "_target_" else upgrade(value)
    elif isinstance(config, list):
        for value in config:
            upgrade(value)
    return config
