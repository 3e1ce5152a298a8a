"""The same run counted twice would pass for an extra seed (n=2, seeds ``0 0``, ± 0.00): e.g. a
sweep that ran twice, or two sweep folders given to one report. A run is a duplicate of another
when their resolved configs are equal, seed included, apart from keys that cannot change a result
(``src.training.admission.IGNORED``: where the data lives, logging, ...). Only the first (by folder) counts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from src.training.admission import IGNORED
from src.utils.nested import flatten


def identity(config: dict[str, Any]) -> str | None:
    """The part of a resolved config that decides what a run computes, as one string (None: unknown)."""
    if not config:
        return None
    kept = {k: v for k, v in flatten(config).items() if not any(k == i or k.startswith(i + ".") for i in IGNORED)}
    return json.dumps(kept, sort_keys=True, default=str)


def mark_duplicates(runs: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """``runs`` with every usable duplicate turned into status ``duplicate`` (listed, not counted),
    and one warning line per duplicate."""
    first: dict[str, Any] = {}
    out, warnings = [], []
    for run in sorted(runs, key=lambda r: str(r.folder)):
        config = identity(run.config) if run.usable else None
        # The record's labels too (experiment, data, backbone, loss, m): a config alone may not name them.
        key = None if config is None else json.dumps([list(run.key), run.seed, config], default=str)
        if key is None:
            out.append(run)
        elif key in first:
            kept = first[key].folder
            reason = f"same config and seed as {kept}: counted once"
            out.append(dataclasses.replace(run, status="duplicate", reason=reason))
            warnings.append(f"{run.folder} is a duplicate run ({reason})")
        else:
            first[key] = run
            out.append(run)
    return out, warnings
