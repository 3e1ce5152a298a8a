"""The configuration's vocabulary: where it lives (``CONF_DIR``), its value checks, its history.

* ``checks``: the one vocabulary of value checks (``check_int``, ``check_number``, ``check_bool``,
  ``check_choice``, ``fail``) that every component and the config pass use; each raises a
  one-line ``ConfigError`` (``src.errors``).
* ``moved``: component paths (``_target_``) that moved, so that older run folders still match.

The pass over a whole composed config that runs before any data is read builds components, so
it sits above them, beside the pipeline that calls it: ``src.training.validate``.
"""

from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_options(group: str) -> list[str]:
    """The option names of a config group: the yaml files in ``conf/<group>/``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
