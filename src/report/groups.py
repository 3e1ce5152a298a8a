"""Runs grouped into configurations (experiment, data, backbone, loss, m), ordered baseline first;
a group's shared values, summed confusion matrix and the settings its runs disagree on."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from src.report.runs import Run

BASELINE_LOSS = "softmax"
LOSS_ORDER = ("softmax", "sphereface", "arcface")

# Settings that do not change what a run computes (paths, logging, speed switches, the seed):
# ignored when checking that the runs of one group share a recipe.
IGNORED_PREFIXES = (
    "seed", "name", "debug", "resume", "test", "data.seed", "data.root", "data.fallback", "data.download",
    "data.verify",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "trainer.accelerator", "trainer.devices", "callbacks", "best_checkpoint", "learning_rate", "confusion",
    "history", "embeddings", "logger", "tensorboard", "analysis", "channels_last", "data.channels_last",
    "compile", "matmul_precision", "data.eval_batch_size", "threads",
)


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.dumps(node, sort_keys=True, default=str)}


def _ignored(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in IGNORED_PREFIXES)


@dataclass
class Group:
    key: tuple[str, str, str, str, float | None]
    runs: list[Run]
    label: str = ""
    extra: str = ""  # the experiment / data / backbone part of the label, when the report mixes several
    variant: str = ""  # the head parameters besides m that set it apart from same-loss groups

    @property
    def loss(self) -> str:
        return self.key[3]

    @property
    def m(self) -> float | None:
        return self.key[4]

    @property
    def recipe(self) -> tuple[str, str, str]:
        return self.key[:3]

    def values(self, name: str) -> list[float]:
        return [v for v in (run.value(name) for run in self.runs) if v is not None]

    def nested_values(self, section: str, name: str) -> list[float]:
        return [v for v in (run.nested(section, name) for run in self.runs) if v is not None]

    def seeds(self) -> list[Any]:
        return sorted((run.seed for run in self.runs), key=str)

    def matrices(self) -> tuple[list[np.ndarray], list[str], int]:
        """Each run's test confusion matrix (those of the first usable shape), class names, runs skipped."""
        found: list[np.ndarray] = []
        names: list[str] = []
        skipped = 0
        for run in self.runs:
            try:
                arr = np.asarray(run.record.get("test_confusion"), dtype=np.int64)
            except (TypeError, ValueError):
                skipped += 1
                continue
            square = arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.size > 0
            if not square or (found and arr.shape != found[0].shape):
                skipped += 1
                continue
            if not found:
                names = [str(n) for n in (run.record.get("class_names") or [])]
            found.append(arr)
        if found and len(names) != len(found[0]):
            names = [str(i) for i in range(len(found[0]))]
        return found, names, skipped

    def confusion(self) -> tuple[np.ndarray | None, list[str], str]:
        """The test confusion matrices summed over the group's runs, the class names, a note."""
        found, names, skipped = self.matrices()
        total = np.sum(found, axis=0) if found else None
        return total, names, f"{skipped} run(s) without a usable test_confusion" if skipped else ""

    def differing_settings(self) -> dict[str, list[str]]:
        """Settings (other than seed, paths and logging) whose values differ between the runs."""
        flats = [_flatten(run.config) for run in self.runs if run.config]
        if len(flats) < 2:
            return {}
        keys = {k for flat in flats for k in flat if not _ignored(k)}
        return {k: sorted({flat.get(k, "(unset)") for flat in flats}) for k in sorted(keys)
                if len({flat.get(k, "(unset)") for flat in flats}) > 1}


def _sort_key(key: tuple[str, str, str, str, float | None]) -> tuple[Any, ...]:
    loss = key[3]
    order = LOSS_ORDER.index(loss) if loss in LOSS_ORDER else len(LOSS_ORDER)
    return (key[0], key[1], key[2], order, loss, -1.0 if key[4] is None else key[4])


def _loss_params(run: Run) -> dict[str, str]:
    """The head's recorded parameters other than m, as comparable strings."""
    params = run.record.get("loss_params")
    if not isinstance(params, dict):
        return {}
    return {str(k): json.dumps(v, sort_keys=True, default=str) for k, v in params.items() if k != "m"}


def _split_by_loss_params(members: list[Run]) -> list[tuple[str, list[Run]]]:
    """Runs of one loss and m whose other head parameters differ (a search over L-Softmax's lambda
    floor, say) are different configurations: one part per combination, named by the parameters
    that differ, e.g. "lambda_min=1"; runs that agree stay one part with no name."""
    params = [_loss_params(run) for run in members]
    names = sorted({k for p in params for k in p})
    varying = [k for k in names if len({p.get(k, "(unset)") for p in params}) > 1]
    parts: dict[str, list[Run]] = {}
    for run, p in zip(members, params, strict=True):
        variant = " ".join(f"{k}={_short(p.get(k, '(unset)'))}" for k in varying)
        parts.setdefault(variant, []).append(run)
    return sorted(parts.items(), key=lambda kv: _variant_order(kv[0]))


def _short(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return f"{value:g}" if isinstance(value, float) else str(value)


def _variant_order(variant: str) -> tuple[Any, ...]:
    # Numbers compare as numbers, so lambda_min=5 comes before lambda_min=10.
    out: list[Any] = []
    for item in variant.split():
        name, _, value = item.partition("=")
        try:
            out.append((name, 0, float(value), ""))
        except ValueError:
            out.append((name, 1, 0.0, value))
    return tuple(out)


def group_runs(runs: Iterable[Run]) -> list[Group]:
    by_key: dict[tuple[str, str, str, str, float | None], list[Run]] = {}
    for run in runs:
        if run.usable:
            by_key.setdefault(run.key, []).append(run)
    groups = [Group(key, sorted(part, key=lambda r: (str(r.seed), str(r.folder))), variant=variant)
              for key, members in sorted(by_key.items(), key=lambda kv: _sort_key(kv[0]))
              for variant, part in _split_by_loss_params(members)]
    varying = [len({g.key[i] for g in groups}) > 1 for i in range(3)]
    for group in groups:
        base = group.loss if group.m is None else f"{group.loss} m={group.m:g}"
        if group.variant:
            base = f"{base} {group.variant}"
        group.extra = ", ".join(str(group.key[i]) for i in range(3) if varying[i])
        group.label = f"{base} [{group.extra}]" if group.extra else base
    return groups


def baseline_for(group: Group, groups: Sequence[Group]) -> Group | None:
    return next((g for g in groups if g.loss == BASELINE_LOSS and g.recipe == group.recipe), None)

