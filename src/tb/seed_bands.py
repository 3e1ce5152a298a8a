"""A sweep read across seeds: per configuration, the mean accuracy per epoch with a band of one
standard deviation over its seeds, as TensorBoard Custom Scalars margin charts.

A *configuration* is one combination of the swept keys other than the seed (``seed`` and any key
whose last part is ``seed``, such as ``data.seed``), named by them as the job folders are
(``study_config=softmax``, ``loss=arcface,loss.m=2``). For each one, ``<sweep>/_seeds/<configuration>/``
holds one event file with, per epoch (the step is the 0-based epoch of the run record and the
checkpoint names):

    seeds/val_acc/mean, seeds/val_acc/lower, seeds/val_acc/upper      (mean - std, mean + std)
    seeds/train_acc/mean, seeds/train_acc/lower, seeds/train_acc/upper

and ``<sweep>/_seeds/`` holds the layout: one margin chart per metric. TensorBoard draws a margin
series once per run that has its tags and colours it by run, so one run per configuration gives
each configuration's band its own colour (seven series of one run would share one colour).

Only accuracies are charted: every head's ``train/loss`` is its own objective on its own scale
(ArcFace's is a cross-entropy over s = 30 cosine logits with the target's margin taken off: about 65
for m = 4 where softmax's is 0.08 at a similar accuracy), so losses of different heads are not
comparable; accuracies are measured the same way for every head (label-free argmax).

The values come from each run's record (its ``history``, one row per finished epoch),
not from its event files: the record is what a study commits, it holds one row per epoch even for a
run resumed over several segments (event files then repeat the epochs after the checkpoint), and
reading 21 small JSON files takes milliseconds where the event files take seconds. An epoch's band
covers the seeds that reached it (a run still going counts up to its last epoch); the standard
deviation is the sample one (n - 1, as in the study's tables), and 0 for a single seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as layout_metadata
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from src.errors import RunFolderError
from src.runs.folder import EVENT_FILES, RunFolder, find_runs
from src.utils.nested import flatten
from src.utils.resolvers import override_key
from src.utils.swept import sweep_keys

log = logging.getLogger(__name__)

FOLDER = "_seeds"  # the aggregate runs' folder inside the sweep folder (rewritten whole each time)
# History key -> the tag stem and the chart title. Accuracies only: see the module docstring.
METRICS = {
    "val/acc": ("seeds/val_acc", "val/acc (validation accuracy)"),
    "train/acc": ("seeds/train_acc", "train/acc (training accuracy, dropout on, over the epoch)"),
}
CATEGORY = "{metric}: mean ± 1 std over seeds, one band per configuration"


def is_seed_key(key: str) -> bool:
    """``seed``, ``data.seed``: keys that only draw another sample of the same configuration."""
    return key.rsplit(".", 1)[-1] == "seed"


@dataclass
class SeedRun:
    folder: Path
    overrides: dict[str, str]  # key -> value as typed (``seed`` -> ``"0"``)
    history: list[dict[str, Any]]
    job: int | None = None


@dataclass
class Band:
    """One metric of one configuration: per epoch, the mean, mean -/+ std and the number of seeds."""

    epochs: list[int] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _job_num(folder: RunFolder) -> int | None:
    hydra_cfg = _load_yaml(folder.hydra_copy("hydra"))
    try:
        return int(hydra_cfg["hydra"]["job"]["num"])
    except (TypeError, KeyError, ValueError):
        return None


def read_runs(root: Path) -> list[SeedRun]:
    """Every run below ``root`` whose record has a history, in job order (then by folder)."""
    runs = []
    for folder in find_runs(root):
        history = folder.readable_record().get("history")
        if not history:
            continue
        overrides = _load_yaml(folder.hydra_copy("overrides"))
        pairs = [str(o).split("=", 1) for o in overrides] if isinstance(overrides, list) else []
        runs.append(SeedRun(folder.path, {override_key(p[0]): p[1] for p in pairs if len(p) == 2}, history,
                            _job_num(folder)))
    runs.sort(key=lambda r: (r.job is None, r.job or 0, str(r.folder)))
    return runs


def _fallback_value(path: Path, key: str) -> str | None:
    """A key a run did not override: its group choice (``loss`` -> ``softmax``) or its config value."""
    folder = RunFolder(path)
    hydra_cfg = _load_yaml(folder.hydra_copy("hydra"))
    try:
        choice = hydra_cfg["hydra"]["runtime"]["choices"].get(key)
    except (TypeError, KeyError, AttributeError):
        choice = None
    if choice is not None:
        return str(choice)
    try:
        config = folder.read_config()
    except RunFolderError:
        config = None
    value = flatten(config).get(key) if config else None
    return None if value is None else str(value)


def swept_keys(root: Path, runs: Sequence[SeedRun]) -> list[str]:
    """The keys that tell configurations apart: the sweep's own (``multirun.yaml``, in the order
    typed), then any other override whose value differs between the runs (a folder of single runs,
    or a sweep continued with other values), the seed keys left out."""
    keys: list[str] = []
    multirun = _load_yaml(root / "multirun.yaml")
    try:
        hydra_cfg = multirun["hydra"]
        keys = sweep_keys(list(hydra_cfg["overrides"]["task"]), (hydra_cfg.get("sweeper") or {}).get("params"))
    except (TypeError, KeyError, AttributeError):
        keys = []
    all_keys = sorted({k for run in runs for k in run.overrides})
    for key in all_keys:
        values = {run.overrides.get(key) for run in runs}
        if len(values) > 1 and key not in keys:
            keys.append(key)
    return [k for k in keys if not is_seed_key(k)]


def config_name(run: SeedRun, keys: Iterable[str]) -> str:
    """``study_config=softmax`` / ``loss=arcface,loss.m=2`` (``/`` in a value becomes ``-``, so the
    name is one folder); ``all`` when nothing but the seed was swept."""
    parts = []
    for key in keys:
        value = run.overrides.get(key)
        if value is None:
            value = _fallback_value(run.folder, key)
        parts.append(f"{key}={'?' if value is None else value.replace('/', '-')}")
    return ",".join(parts) or "all"


def group_runs(runs: Sequence[SeedRun], keys: Sequence[str]) -> dict[str, list[SeedRun]]:
    """Runs by configuration, configurations in the order of their first job."""
    groups: dict[str, list[SeedRun]] = {}
    for run in runs:
        groups.setdefault(config_name(run, keys), []).append(run)
    return groups


def _per_epoch(history: Iterable[Mapping[str, Any]], metric: str) -> dict[int, float]:
    values = {}
    for row in history:
        value, epoch = row.get(metric), row.get("epoch")
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(epoch, int):
            values[epoch] = float(value)  # a repeated epoch (never in a merged record): the later row
    return values


def band(histories: Iterable[Iterable[Mapping[str, Any]]], metric: str) -> Band:
    """Mean and mean -/+ sample std of ``metric`` per epoch over the runs that logged it (std 0
    for one run; non-finite values, a diverged epoch, left out)."""
    series = [_per_epoch(h, metric) for h in histories]
    out = Band()
    for epoch in sorted({e for s in series for e in s}):
        values = [s[epoch] for s in series if epoch in s]
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        out.epochs.append(epoch)
        out.mean.append(mean)
        out.lower.append(mean - std)
        out.upper.append(mean + std)
        out.seeds.append(len(values))
    return out


def seed_bands(root: Path) -> dict[str, dict[str, Band]]:
    """``configuration -> metric -> Band`` for every run below ``root`` (metrics no run logged left out)."""
    runs = read_runs(root)
    out: dict[str, dict[str, Band]] = {}
    for name, group in group_runs(runs, swept_keys(root, runs)).items():
        bands = {metric: band((r.history for r in group), metric) for metric in METRICS}
        bands = {metric: b for metric, b in bands.items() if b.epochs}
        if bands:
            out[name] = bands
    return out


def layout(metrics: Iterable[str]) -> layout_pb2.Layout:
    """One margin chart per metric, each in its own category: TensorBoard keeps the categories in
    this order (val/acc first) but sorts the charts of one category by title. The chart's one series
    is drawn once per configuration's run."""
    categories = []
    for metric in metrics:
        stem, title = METRICS[metric]
        series = layout_pb2.MarginChartContent.Series(value=f"{stem}/mean", lower=f"{stem}/lower",
                                                      upper=f"{stem}/upper")
        chart = layout_pb2.Chart(title=title, margin=layout_pb2.MarginChartContent(series=[series]))
        categories.append(layout_pb2.Category(title=CATEGORY.format(metric=metric), chart=[chart]))
    return layout_pb2.Layout(category=categories)


def layout_summary(value: layout_pb2.Layout) -> Summary:
    """The Custom Scalars layout record (what ``tensorboard.plugins.custom_scalar.summary.pb`` writes,
    without the TensorFlow it imports)."""
    summary = Summary()
    summary.value.add(tag=layout_metadata.CONFIG_SUMMARY_TAG, metadata=layout_metadata.create_summary_metadata(),
                      tensor=tensor_util.make_tensor_proto(value.SerializeToString()))
    return summary


def _clear(folder: Path) -> None:
    """Removes the event files of an earlier write (and the folders they leave empty); nothing else."""
    if not folder.is_dir():
        return
    for path in folder.rglob(EVENT_FILES):
        path.unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def write_seed_bands(root: Path) -> Path | None:
    """(Re)writes ``root/_seeds``; its path, or None when no run below ``root`` has a history."""
    root = Path(root)
    bands = seed_bands(root)
    out = root / FOLDER
    _clear(out)
    if not bands:
        return None
    for name, metrics in bands.items():
        writer = SummaryWriter(log_dir=str(out / name))
        for metric, b in metrics.items():
            stem = METRICS[metric][0]
            for epoch, mean, lower, upper in zip(b.epochs, b.mean, b.lower, b.upper, strict=True):
                writer.add_scalar(f"{stem}/mean", mean, epoch)
                writer.add_scalar(f"{stem}/lower", lower, epoch)
                writer.add_scalar(f"{stem}/upper", upper, epoch)
        writer.close()
    found = [m for m in METRICS if any(m in metrics for metrics in bands.values())]
    writer = SummaryWriter(log_dir=str(out))
    writer._get_file_writer().add_summary(layout_summary(layout(found)))  # raw summary: no public API for it
    writer.close()
    return out
