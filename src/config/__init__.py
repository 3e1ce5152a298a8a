"""The configuration: where it lives (``CONF_DIR``), its checks, and its history.

* ``checks``: the one vocabulary of value checks (``check_int``, ``check_number``, ``check_bool``,
  ``check_choice``, ``fail``) that every component and the config pass use; each raises a
  one-line ``ConfigError`` (``src.errors``).
* ``validate``: ``check_config``, the one pass over a composed config that runs before any data
  is read (the Trainer, the data, the top-level switches from tables; the backbone, the loss head,
  the optimiser and the schedule by building them, so that their own checks run).
* ``moved``: component paths (``_target_``) that moved, so that older run folders still match.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """The option names of a config group: the yaml files in ``conf/<group>/``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
