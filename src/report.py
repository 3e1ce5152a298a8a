"""The study report: ``python -m src.report <run or sweep folder> [more folders] [--out DIR]``.

Reads what finished runs saved (``metrics.json`` and ``config_resolved.yaml`` in each run folder,
found recursively); never trains. Writes into ``--out``:

* ``report.md``: per configuration (loss, m) the mean ± std over seeds of test accuracy (honest,
  and the leakage audit's ``test_acc_leaky`` beside it), best validation accuracy, epochs, wall
  time and run count; each margin loss against the baseline (Welch's t-test, Holm-adjusted, and
  a bootstrap CI of the difference); the reference study's numbers (brief section 2) beside
  ours with a computed verdict per claim; embedding geometry and open-set columns where the runs
  have them; embedding retrieval / clustering metrics (precision@1, R-precision, MAP@R, NMI, AMI) on
  the test set and the held-out classes; validation-accuracy curves; test confusion matrices
  summed over seeds and the most confused class pairs; and every run that could not be used
  (failed, unfinished, corrupt), with its reason;
* ``runs.csv`` (one row per run folder, unusable ones included), ``summary.csv`` (one row per
  configuration), ``significance.csv``, ``confused_pairs.csv`` and the PNG figures.

A run folder that holds ``evaluation.json`` (``python -m src.evaluate``: the best checkpoint re-tested
later, without training) contributes that file's test figures and analyses instead of the training
record's; the report says how many did.

Runs are grouped by (experiment, data, backbone, loss, m); the first three show in a label only
when the report mixes several values. A group whose runs differ in another setting is flagged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

RECORD = "metrics.json"
CONFIG = "config_resolved.yaml"
EVALUATION = "evaluation.json"
# What a later evaluation (src/analysis/evaluation.py) re-measures; it replaces the record's values.
EVALUATED_KEYS = ("test_acc", "test_acc_macro", "test_acc_leaky", "test_confusion", "class_names", "geometry",
                  "open_set", "retrieval")
ALPHA = 0.05
BOOTSTRAP = 10_000
TOP_PAIRS = 5
BASELINE_LOSS = "softmax"
LOSS_ORDER = ("softmax", "sphereface", "arcface")

# Brief section 2: max test accuracy over 50 epochs (Keras, Adadelta lr=1, batch 128), one run
# each; the SphereFace m=2 figure came from a protocol that leaked the test labels.
REFERENCE: dict[tuple[str, float | None], float] = {
    ("softmax", None): 94.15,
    ("sphereface", 2.0): 95.32,
    ("sphereface", 4.0): 93.52,
    ("sphereface", 6.0): 94.87,
    ("arcface", 0.5): 94.28,
    ("arcface", 2.0): 93.76,
    ("arcface", 4.0): 94.03,
}
KNOWN_PAIRS = (("T-shirt/top", "Shirt"), ("Pullover", "Coat"), ("Pullover", "Shirt"), ("Coat", "Shirt"),
               ("Sneaker", "Ankle boot"))

# Settings that do not change what a run computes (paths, logging, speed switches, the seed):
# ignored when checking that the runs of one group share a recipe.
IGNORED_PREFIXES = (
    "seed", "name", "debug", "resume", "test", "data.seed", "data.root", "data.fallback", "data.download",
    "data.verify",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
    "trainer.accelerator", "trainer.devices", "callbacks", "best_checkpoint", "learning_rate", "confusion",
    "history", "embeddings", "logger", "tensorboard", "analysis", "channels_last", "data.channels_last",
    "compile", "matmul_precision", "data.eval_batch_size",
)

GEOMETRY_KEYS = ("max_intra_deg", "min_inter_deg", "mean_to_center_deg")
OPEN_SET_KEYS = ("roc_auc", "tar_far1e-2", "tar_far1e-3", "recall_at_1")
RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "map_at_r", "nmi", "ami")
RETRIEVAL_HEADERS = ("P@1", "R-precision", "MAP@R", "NMI", "AMI")


# ------------------------------------------------------------------------------------------
# Reading run folders
# ------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a string...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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
        return str(self.record.get("experiment") or "-")

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
        config = loaded if isinstance(loaded, dict) else {}
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


# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN where undefined)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def _scipy_stats() -> Any:
    """``scipy.stats``, or None when scipy is not installed (the tests then say so)."""
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


NO_SCIPY = "not testable: scipy is not installed (pip install scipy)"


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value for mean(a) != mean(b) (NaN when undefined)."""
    stats = _scipy_stats()
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) < 2 or len(b_arr) < 2:
        return math.nan, math.nan
    if a_arr.var(ddof=1) == 0 and b_arr.var(ddof=1) == 0:
        # No spread at all: equal means are no evidence, different means are "infinitely" clear.
        return (0.0, 1.0) if a_arr.mean() == b_arr.mean() else (math.copysign(math.inf, a_arr.mean() - b_arr.mean()),
                                                                  0.0)
    if stats is None:
        return math.nan, math.nan
    result = stats.ttest_ind(a_arr, b_arr, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def bootstrap_ci(a: Sequence[float], b: Sequence[float], reps: int = BOOTSTRAP, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(a) - mean(b), resampling each group with replacement."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) < 2 or len(b_arr) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    diffs = (rng.choice(a_arr, size=(reps, len(a_arr))).mean(axis=1)
             - rng.choice(b_arr, size=(reps, len(b_arr))).mean(axis=1))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return float(low), float(high)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    valid = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (len(valid) - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    group: Group
    baseline: Group | None
    diff: float = math.nan
    t: float = math.nan
    p: float = math.nan
    p_holm: float = math.nan
    ci: tuple[float, float] = (math.nan, math.nan)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        if math.isnan(self.p_holm):
            return "not testable"
        if self.p_holm < ALPHA:
            return "significantly better" if self.diff > 0 else "significantly worse"
        return "no significant difference"


def compare(group: Group, baseline: Group | None) -> Comparison:
    if baseline is None:
        return Comparison(group, None, note="no baseline runs with the same recipe")
    a, b = group.values("test_acc"), baseline.values("test_acc")
    comp = Comparison(group, baseline, diff=float(np.mean(a) - np.mean(b)) if a and b else math.nan)
    if len(a) < 2 or len(b) < 2:
        comp.note = f"n too small (n={len(a)} vs {len(b)}; need >= 2 each)"
        return comp
    if _scipy_stats() is None:
        comp.note = NO_SCIPY
    comp.t, comp.p = welch(a, b)
    comp.ci = bootstrap_ci(a, b)
    return comp


def confused_pairs(matrix: np.ndarray, names: Sequence[str], top: int = TOP_PAIRS) -> list[dict[str, Any]]:
    """The ``top`` class pairs with the most off-diagonal counts, both directions combined."""
    counts = np.asarray(matrix, dtype=np.int64)
    errors = int(counts.sum() - np.trace(counts))
    pairs = []
    for i in range(len(counts)):
        for j in range(i + 1, len(counts)):
            both = int(counts[i, j] + counts[j, i])
            if both:
                pairs.append({"a": names[i] if i < len(names) else str(i), "b": names[j] if j < len(names) else str(j),
                              "count": both, "a_as_b": int(counts[i, j]), "b_as_a": int(counts[j, i]),
                              "share_of_errors": both / errors if errors else math.nan})
    pairs.sort(key=lambda p: (-p["count"], p["a"], p["b"]))
    return pairs[:top]


# ------------------------------------------------------------------------------------------
# Groups
# ------------------------------------------------------------------------------------------


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

    def confusion(self) -> tuple[np.ndarray | None, list[str], str]:
        """The test confusion matrices summed over the group's runs, the class names, a note."""
        total, names, skipped = None, [], 0
        for run in self.runs:
            matrix = run.record.get("test_confusion")
            try:
                arr = np.asarray(matrix, dtype=np.int64)
            except (TypeError, ValueError):
                skipped += 1
                continue
            if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.size == 0:
                skipped += 1
                continue
            if total is None:
                total = arr.copy()
                names = [str(n) for n in (run.record.get("class_names") or [])]
            elif arr.shape == total.shape:
                total += arr
            else:
                skipped += 1
        if total is not None and len(names) != len(total):
            names = [str(i) for i in range(len(total))]
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


def group_runs(runs: Iterable[Run]) -> list[Group]:
    by_key: dict[tuple[str, str, str, str, float | None], list[Run]] = {}
    for run in runs:
        if run.usable:
            by_key.setdefault(run.key, []).append(run)
    groups = [Group(key, sorted(members, key=lambda r: (str(r.seed), str(r.folder))))
              for key, members in sorted(by_key.items(), key=lambda kv: _sort_key(kv[0]))]
    varying = [len({g.key[i] for g in groups}) > 1 for i in range(3)]
    for group in groups:
        base = group.loss if group.m is None else f"{group.loss} m={group.m:g}"
        group.extra = ", ".join(str(group.key[i]) for i in range(3) if varying[i])
        group.label = f"{base} [{group.extra}]" if group.extra else base
    return groups


def baseline_for(group: Group, groups: Sequence[Group]) -> Group | None:
    return next((g for g in groups if g.loss == BASELINE_LOSS and g.recipe == group.recipe), None)


# ------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------


def _curve(runs: Sequence[Run], metric: str = "val/acc") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs and the mean / min / max of ``metric`` over runs (epochs missing in a run are skipped)."""
    per_epoch: dict[int, list[float]] = {}
    for run in runs:
        history = run.record.get("history")
        if not isinstance(history, list):
            continue
        for row in history:
            if isinstance(row, dict) and _number(row.get("epoch")) is not None and _number(row.get(metric)) is not None:
                per_epoch.setdefault(int(row["epoch"]), []).append(float(row[metric]))
    epochs = np.array(sorted(per_epoch), dtype=int)
    vals = [np.asarray(per_epoch[e]) for e in epochs]
    return (epochs, np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


def curve_figures(groups: Sequence[Group], out: Path) -> list[tuple[str, str]]:
    """One PNG per loss: the mean validation accuracy per epoch for each m (band: min..max over
    seeds), the baseline dashed for reference. Returns ``(loss, file name)`` pairs."""
    from src.plots import plt

    written = []
    losses = sorted({g.loss for g in groups}, key=lambda x: (LOSS_ORDER.index(x) if x in LOSS_ORDER else 9, x))
    for loss in losses:
        members = [g for g in groups if g.loss == loss]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        drawn = 0
        if loss != BASELINE_LOSS:
            for base in {id(b): b for b in (baseline_for(g, groups) for g in members) if b}.values():
                epochs, mean, _, _ = _curve(base.runs)
                if len(epochs):
                    ax.plot(epochs, mean, "--", color="0.4", label=f"{base.label} (n={len(base.runs)})")
        for group in members:
            epochs, mean, low, high = _curve(group.runs)
            if not len(epochs):
                continue
            line = ax.plot(epochs, mean, marker="o" if len(epochs) < 15 else None, ms=3,
                           label=f"{group.label} (n={len(group.runs)})")[0]
            if len(group.runs) > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, lw=0)
            drawn += 1
        if drawn:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel("validation accuracy")
            ax.set_title(f"{loss}: validation accuracy (mean over seeds; band = min..max)", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            name = f"curves_{_slug(loss)}.png"
            fig.savefig(out / name)
            written.append((loss, name))
        plt.close(fig)
    return written


def confusion_grid(groups: Sequence[Group], out: Path, name: str = "confusion_grid.png") -> str | None:
    """Row-normalised test confusion matrices (counts summed over seeds), one panel per group."""
    from src.plots import plt

    panels = [(g, *g.confusion()[:2]) for g in groups]
    panels = [(g, mat, names) for g, mat, names in panels if mat is not None]
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    k = max(len(mat) for _, mat, _ in panels)
    size = 1.2 + 0.42 * k
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.3)), dpi=100, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (group, mat, names) in zip(axes.flat, panels, strict=False):
        share = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        n = len(mat)
        ax.set_xticks(range(n), names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), names, fontsize=6)
        for i in range(n):
            for j in range(n):
                if mat[i, j]:
                    ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=4.5,
                            color="white" if share[i, j] > 0.5 else "black")
        acc = np.trace(mat) / max(mat.sum(), 1)
        ax.set_title(f"{group.label}\n(n runs={len(group.runs)}, acc={acc:.2%})", fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


# ------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------


def pct(mean: float, std: float = math.nan) -> str:
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def num(mean: float, std: float = math.nan, digits: int = 1) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def pvalue(p: float) -> str:
    return "–" if math.isnan(p) else ("< 1e-4" if p < 1e-4 else f"{p:.4f}")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if (isinstance(x, float) and math.isnan(x)) or x is None else x for x in row])


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------


def summary_row(group: Group) -> dict[str, Any]:
    row: dict[str, Any] = {
        "configuration": group.label, "experiment": group.key[0], "data": group.key[1], "backbone": group.key[2],
        "loss": group.loss, "m": group.m, "n_runs": len(group.runs), "seeds": " ".join(map(str, group.seeds())),
    }
    for name in ("test_acc", "test_acc_leaky", "test_acc_macro", "val_acc_best", "epochs", "wall_time_s"):
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(group.values(name))
    for name in GEOMETRY_KEYS:
        row[f"geometry_{name}_mean"], row[f"geometry_{name}_std"] = mean_std(group.nested_values("geometry", name))
    holds = [run.record["geometry"].get("criterion_holds") for run in group.runs
             if isinstance(run.record.get("geometry"), dict) and "criterion_holds" in run.record["geometry"]]
    row["geometry_criterion_holds"] = f"{sum(bool(h) for h in holds)}/{len(holds)}" if holds else ""
    for name in OPEN_SET_KEYS:
        row[f"open_set_{name}_mean"], row[f"open_set_{name}_std"] = mean_std(group.nested_values("open_set", name))
    for name in RETRIEVAL_KEYS:
        row[f"retrieval_{name}_mean"], row[f"retrieval_{name}_std"] = mean_std(group.nested_values("retrieval", name))
        held_out = [v for v in (run.open_set_retrieval(name) for run in group.runs) if v is not None]
        row[f"open_set_retrieval_{name}_mean"], row[f"open_set_retrieval_{name}_std"] = mean_std(held_out)
    return row


def reference_rows(groups: Sequence[Group], comparisons: dict[int, Comparison]) -> list[list[str]]:
    rows = []
    ref_base = REFERENCE[(BASELINE_LOSS, None)]
    for (loss, m), reported in REFERENCE.items():
        name = "CNN + Softmax (baseline)" if loss == BASELINE_LOSS else f"{loss} m={m:g}"
        matches = [g for g in groups if g.loss == loss and (g.m == m or (m is not None and g.m is not None
                                                                             and math.isclose(g.m, m)))]
        if loss == BASELINE_LOSS:
            claim = f"baseline reaches {reported:.2f}%"
        else:
            delta = reported - ref_base
            claim = f"{'beats' if delta > 0 else 'is below'} baseline ({delta:+.2f} pp)"
        if not matches:
            rows.append([name, f"{reported:.2f}", "no runs", "–", claim, "not tested"])
            continue
        for group in matches:
            acc = group.values("test_acc")
            mean, std = mean_std(acc)
            leaky = pct(*mean_std(group.values("test_acc_leaky")))
            ours = f"{pct(mean, std)} (n={len(acc)})"
            label = f"{name} [{group.extra}]" if group.extra else name
            if loss == BASELINE_LOSS:
                verdict = _baseline_verdict(acc, reported)
            else:
                verdict = _claim_verdict(comparisons.get(id(group)), reported - ref_base)
            rows.append([label, f"{reported:.2f}", ours, leaky, claim, verdict])
    return rows


def _baseline_verdict(acc: Sequence[float], reported: float) -> str:
    if len(acc) < 2:
        return "n too small"
    stats = _scipy_stats()
    if stats is None:
        return NO_SCIPY
    mean, std = mean_std(acc)
    half = float(stats.t.ppf(1 - ALPHA / 2, len(acc) - 1)) * std / math.sqrt(len(acc))
    low, high = 100 * (mean - half), 100 * (mean + half)
    inside = low <= reported <= high
    return (f"holds: {reported:.2f} is inside our 95% CI [{low:.2f}, {high:.2f}]" if inside
            else f"does not hold: our 95% CI is [{low:.2f}, {high:.2f}]")


def _claim_verdict(comp: Comparison | None, reported_delta: float) -> str:
    if comp is None:
        return "not tested"
    if comp.note:
        return comp.note
    verdict = comp.verdict
    want = "significantly better" if reported_delta > 0 else "significantly worse"
    if verdict == want:
        return f"holds ({verdict}, Holm p={pvalue(comp.p_holm)})"
    if verdict == "no significant difference":
        return f"not supported (no significant difference, Holm p={pvalue(comp.p_holm)})"
    if verdict.startswith("significantly"):
        return f"contradicted ({verdict}, Holm p={pvalue(comp.p_holm)})"
    return verdict


def confusion_claims(groups: Sequence[Group]) -> list[str]:
    """Brief section 2's known confusions, checked on each baseline group's summed matrix."""
    lines = []
    for group in groups:
        if group.loss != BASELINE_LOSS:
            continue
        matrix, names, _ = group.confusion()
        if matrix is None or not {"T-shirt/top", "Shirt"} <= set(names):
            continue
        top = confused_pairs(matrix, names, top=TOP_PAIRS)
        if not top:
            continue
        pairs = [{p["a"], p["b"]} for p in top]
        worst = {"T-shirt/top", "Shirt"} == pairs[0]
        known = [f"{a} <-> {b}" for a, b in KNOWN_PAIRS if {a, b} in pairs]
        lines.append(
            f"- {group.label}: \"T-shirt/top <-> Shirt is the worst pair\" "
            f"{'holds' if worst else 'does not hold (worst: ' + top[0]['a'] + ' <-> ' + top[0]['b'] + ')'}; "
            f"{len(known)} of the 5 known pairs are in our top {TOP_PAIRS}"
            + (f" ({', '.join(known)})" if known else "") + "."
        )
    return lines


def build_report(runs: Sequence[Run], out: Path, inputs: Sequence[str]) -> str:
    """Write every output file into ``out``; returns the markdown text."""
    out.mkdir(parents=True, exist_ok=True)
    # Reference-protocol audit runs feed only their own section (src/report_gap.py), never the tables.
    from src.report_gap import CSV_HEADER, gap_section, is_audit_run

    groups = group_runs(run for run in runs if not is_audit_run(run))
    problems = [run for run in runs if not run.usable]

    comparisons: dict[int, Comparison] = {}
    for group in groups:
        if group.loss != BASELINE_LOSS:
            comparisons[id(group)] = compare(group, baseline_for(group, groups))
    tested = [c for c in comparisons.values() if not c.note]
    for comp, adjusted in zip(tested, holm([c.p for c in tested]), strict=True):
        comp.p_holm = adjusted

    summaries = [summary_row(g) for g in groups]
    _write_csvs(out, runs, groups, summaries, comparisons)
    curves = curve_figures(groups, out) if groups else []
    grid = confusion_grid(groups, out) if groups else None

    md: list[str] = ["# Margin-loss study report", ""]
    md.append(f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m src.report` from: "
              + ", ".join(f"`{p}`" for p in inputs) + ".")
    md.append(f"{len(runs)} run folder(s): {sum(r.usable for r in runs)} finished and used, "
              f"{len(problems)} not used (listed at the end).")
    evaluated = sum(r.usable and r.evaluated for r in runs)
    if evaluated:
        md.append(f"{evaluated} of the used runs contribute the figures of their `{EVALUATION}` (the best "
                  "checkpoint re-tested by `python -m src.evaluate`, no training) instead of the training record's.")
    md += ["", "Test accuracy is the honest one: the best-validation checkpoint evaluated once on the "
           "test set with label-free prediction. *Leaky* is the leakage audit: the same checkpoint scored by the "
           "argmax of the margin logits built with the true label (a margin on the true class only, which "
           "lowers accuracy; the reference's own label mixing is the reference-protocol audit's); it is not a "
           "valid accuracy. "
           "Mean ± sample std over seeds; accuracies in %.", ""]

    gap_md, gap_rows = gap_section(runs, table, out)
    if not groups:
        md += ["**No finished run with a test accuracy was found" + (" outside the reference-protocol audit.**"
                                                                    if gap_md else ".**"), ""]
    else:
        md += ["## Summary", ""]
        md.append(table(
            ["configuration", "n", "seeds", "test acc", "leaky acc (audit)", "best val acc", "epochs",
             "wall time (min)"],
            [[s["configuration"], s["n_runs"], s["seeds"], pct(s["test_acc_mean"], s["test_acc_std"]),
              pct(s["test_acc_leaky_mean"], s["test_acc_leaky_std"]),
              pct(s["val_acc_best_mean"], s["val_acc_best_std"]), num(s["epochs_mean"], digits=0),
              num(s["wall_time_s_mean"] / 60, s["wall_time_s_std"] / 60)] for s in summaries]))
        md.append("")
        md += _significance_section(comparisons)
        md += _reference_section(groups, comparisons)
        md += _geometry_section(summaries)
        md += _open_set_section(summaries)
        md += _retrieval_section(summaries)
        md += _recipe_warnings(groups)
        if curves:
            md += ["## Validation accuracy", ""]
            md += [f"![{loss}]({name})" for loss, name in curves] + [""]
        md += _confusion_section(groups, grid)
    if gap_md:
        md += gap_md
        _csv(out / "gap_explained.csv", CSV_HEADER, gap_rows)
    md += _problem_section(problems)
    text = "\n".join(md).rstrip() + "\n"
    (out / "report.md").write_text(text)
    return text


def _significance_section(comparisons: dict[int, Comparison]) -> list[str]:
    if not comparisons:
        return []
    rows = []
    for comp in comparisons.values():
        base = comp.baseline
        low, high = comp.ci
        rows.append([
            comp.group.label, base.label if base else "–", f"{len(comp.group.runs)} vs {len(base.runs) if base else 0}",
            "–" if math.isnan(comp.diff) else f"{100 * comp.diff:+.2f}",
            "–" if math.isnan(low) else f"[{100 * low:+.2f}, {100 * high:+.2f}]",
            "–" if math.isnan(comp.t) else f"{comp.t:.2f}", pvalue(comp.p), pvalue(comp.p_holm), comp.verdict,
        ])
    return ["## Margin losses against the baseline", "",
            f"Welch's t-test on test accuracy (two-sided; p adjusted with Holm over the {len(rows)} comparisons), "
            f"and a {BOOTSTRAP}-sample percentile bootstrap 95% CI of the difference in mean accuracy "
            f"(pp = percentage points). Significant means Holm-adjusted p < {ALPHA}. With 3 seeds the test has "
            "little power: \"no significant difference\" is not \"equal\".", "",
            table(["configuration", "baseline", "n", "difference (pp)", "bootstrap 95% CI (pp)", "t", "p", "p (Holm)",
                   "verdict"], rows), ""]


def _reference_section(groups: Sequence[Group], comparisons: dict[int, Comparison]) -> list[str]:
    md = ["## The reference study's claims", "",
          "Reference: brief section 2 (Keras, max *test* accuracy over 50 epochs, one run each; SphereFace m=2 "
          "came from a protocol that fed the true test labels to the margin layer). Ours: best-validation "
          "checkpoint, test set once, mean ± std over seeds. A margin claim holds only if our difference to our "
          "baseline is significant in the same direction; the baseline claim holds if the reported value lies in "
          "the 95% t-interval of our mean.", "",
          table(["run", "reported (%)", "ours, honest (%)", "ours, leaky protocol (%)", "reference claim", "verdict"],
                reference_rows(groups, comparisons)), ""]
    claims = confusion_claims(groups)
    if claims:
        md += ["Known confusions (brief section 2: T-shirt/top <-> Shirt worst, then Pullover <-> Coat, "
               "Pullover <-> Shirt, Coat <-> Shirt, Sneaker <-> Ankle boot):", "", *claims, ""]
    return md


def _geometry_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [[s["configuration"], num(s["geometry_max_intra_deg_mean"], s["geometry_max_intra_deg_std"]),
             num(s["geometry_min_inter_deg_mean"], s["geometry_min_inter_deg_std"]),
             num(s["geometry_mean_to_center_deg_mean"], s["geometry_mean_to_center_deg_std"]),
             s["geometry_criterion_holds"]]
            for s in summaries if s["geometry_criterion_holds"]]
    if not rows:
        return []
    return ["## Embedding geometry (test set)", "",
            "Angles in degrees between L2-normalised test embeddings (src/analysis/geometry.py): max intra = the "
            "largest angle between two embeddings of one class (the largest over classes); min inter = the smallest "
            "angle between two class centers (mean directions); mean to center = the mean angle of an embedding to "
            "its class center. SphereFace's criterion: max intra < min inter (runs where it holds / runs).", "",
            table(["configuration", "max intra (°)", "min inter (°)", "mean to center (°)", "criterion holds"], rows),
            ""]


def _open_set_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [[s["configuration"]] + [pct(s[f"open_set_{k}_mean"], s[f"open_set_{k}_std"]) for k in OPEN_SET_KEYS]
            for s in summaries if not math.isnan(s["open_set_roc_auc_mean"])]
    if not rows:
        return []
    return ["## Open-set verification (held-out classes)", "",
            "The held-out classes' test images, never seen in training, compared pairwise by cosine similarity "
            "(src/analysis/open_set.py); all values in %.", "",
            table(["configuration", "ROC AUC", "TAR @ FAR 1e-2", "TAR @ FAR 1e-3", "Recall@1"], rows), ""]


def _retrieval_section(summaries: Sequence[dict[str, Any]]) -> list[str]:
    md: list[str] = []
    for prefix, title, what in (
        ("retrieval", "Embedding retrieval and clustering (test set)", "the test images of the trained classes"),
        ("open_set_retrieval", "Embedding retrieval and clustering (held-out classes)",
         "the held-out classes' test images, never seen in training"),
    ):
        rows = [[s["configuration"]] + [pct(s[f"{prefix}_{k}_mean"], s[f"{prefix}_{k}_std"]) for k in RETRIEVAL_KEYS]
                for s in summaries if not math.isnan(s[f"{prefix}_map_at_r_mean"])]
        if rows:
            md += [f"## {title}", "",
                   f"Every image of {what} is a query against all the others, by cosine similarity of the "
                   "embeddings, itself excluded (pytorch-metric-learning's AccuracyCalculator; "
                   "src/analysis/retrieval.py): P@1 = its nearest neighbour shares its label; R-precision = share "
                   "of its R nearest neighbours with its label (R = the other images of that label); MAP@R = mean "
                   "of the precision at each of those R ranks that holds a match. NMI / AMI: k-means of the unit "
                   "embeddings (k = number of labels) against the labels. All in %.", "",
                   table(["configuration", *RETRIEVAL_HEADERS], rows), ""]
    return md


def _recipe_warnings(groups: Sequence[Group]) -> list[str]:
    lines = []
    for group in groups:
        diff = group.differing_settings()
        if diff:
            shown = "; ".join(f"`{k}`: {', '.join(v)}" for k, v in list(diff.items())[:6])
            more = f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""
            lines.append(f"- **{group.label}** mixes runs that differ in {shown}{more}.")
    return ["## Warnings", "", *lines, ""] if lines else []


def _confusion_section(groups: Sequence[Group], grid: str | None) -> list[str]:
    md = ["## Test confusion (summed over seeds)", ""]
    if grid:
        md += [f"![confusion matrices]({grid})", ""]
    for group in groups:
        matrix, names, note = group.confusion()
        if matrix is None:
            md += [f"**{group.label}**: no test confusion matrix recorded.", ""]
            continue
        pairs = confused_pairs(matrix, names)
        md.append(f"**{group.label}**: most confused pairs (both directions; a→b = true a predicted b)"
                  + (f"; {note}" if note else "") + ":")
        md.append("")
        md.append(table(["#", "pair", "count", "a→b", "b→a", "share of errors (%)"],
                        [[i + 1, f"{p['a']} <-> {p['b']}", p["count"], p["a_as_b"], p["b_as_a"],
                          pct(p["share_of_errors"])] for i, p in enumerate(pairs)]))
        md.append("")
    return md


def _problem_section(problems: Sequence[Run]) -> list[str]:
    if not problems:
        return ["## Runs not used", "", "None: every run folder finished with a test result.", ""]
    rows = [[_shown(run.folder), run.status, run.loss if run.record or run.config else "?",
             run.m if run.m is not None else "", run.seed if run.seed is not None else "", run.reason]
            for run in problems]
    return ["## Runs not used", "",
            "Failed, interrupted, unfinished or unreadable runs: not in any number above.", "",
            table(["folder", "status", "loss", "m", "seed", "reason"], rows), ""]


def _shown(folder: Path) -> str:
    """A folder relative to the working directory when it lies below it, else absolute."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def _write_csvs(out: Path, runs: Sequence[Run], groups: Sequence[Group], summaries: Sequence[dict[str, Any]],
                comparisons: dict[int, Comparison]) -> None:
    header = ["folder", "status", "reason", "experiment", "data", "backbone", "loss", "m", "seed", "test_acc",
              "test_acc_leaky", "test_acc_macro", "val_acc_best", "epochs", "wall_time_s",
              *[f"geometry_{k}" for k in GEOMETRY_KEYS], "geometry_criterion_holds",
              *[f"open_set_{k}" for k in OPEN_SET_KEYS], *[f"retrieval_{k}" for k in RETRIEVAL_KEYS],
              *[f"open_set_retrieval_{k}" for k in RETRIEVAL_KEYS], "evaluated_at", "commit"]
    rows = []
    for run in runs:
        geometry = run.record.get("geometry") if isinstance(run.record.get("geometry"), dict) else {}
        rows.append([
            str(run.folder), run.status, run.reason, run.experiment, run.data, run.backbone, run.loss, run.m, run.seed,
            run.value("test_acc"), run.value("test_acc_leaky"), run.value("test_acc_macro"),
            run.value("val_acc_best"), run.value("epochs"), run.value("wall_time_s"),
            *[run.nested("geometry", k) for k in GEOMETRY_KEYS], geometry.get("criterion_holds"),
            *[run.nested("open_set", k) for k in OPEN_SET_KEYS], *[run.nested("retrieval", k) for k in RETRIEVAL_KEYS],
            *[run.open_set_retrieval(k) for k in RETRIEVAL_KEYS], run.record.get("evaluated_at"),
            run.record.get("commit"),
        ])
    _csv(out / "runs.csv", header, rows)
    if summaries:
        keys = list(summaries[0])
        _csv(out / "summary.csv", keys, [[s[k] for k in keys] for s in summaries])
    else:
        _csv(out / "summary.csv", ["configuration"], [])
    _csv(out / "significance.csv",
         ["configuration", "baseline", "n", "n_baseline", "diff", "ci_low", "ci_high", "t", "p", "p_holm", "verdict"],
         [[c.group.label, c.baseline.label if c.baseline else "", len(c.group.runs),
           len(c.baseline.runs) if c.baseline else 0, c.diff, *c.ci, c.t, c.p, c.p_holm, c.verdict]
          for c in comparisons.values()])
    pair_rows = []
    for group in groups:
        matrix, names, _ = group.confusion()
        if matrix is not None:
            pair_rows += [[group.label, i + 1, p["a"], p["b"], p["count"], p["a_as_b"], p["b_as_a"]]
                          for i, p in enumerate(confused_pairs(matrix, names))]
    _csv(out / "confused_pairs.csv", ["configuration", "rank", "a", "b", "count", "a_as_b", "b_as_a"], pair_rows)


def main(argv: Sequence[str] | None = None) -> int:
    from src.report_duplicates import mark_duplicates
    from src.report_output import new_report_folder, publish

    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders or sweep folders (searched recursively)")
    parser.add_argument("--out", help="output folder (default: <folder>/report for one folder, else a new "
                                      "outputs/reports/<time>_<id>)")
    args = parser.parse_args(argv)
    missing = [f for f in args.folders if not Path(f).exists()]
    if missing:  # a mistyped folder would silently drop its runs from every mean
        print(f"error: {missing[0]} does not exist (python -m src.report takes run or sweep folders); "
              "nothing written", file=sys.stderr)
        return 1
    runs = load_runs(args.folders)
    if not runs:
        print("error: no run folder (metrics.json or config_resolved.yaml) under " + ", ".join(args.folders)
              + "; nothing written", file=sys.stderr)
        return 1
    runs, duplicates = mark_duplicates(runs)
    for line in duplicates:
        print(f"warning: {line}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
    elif len(args.folders) == 1 and Path(args.folders[0]).is_dir():
        out = Path(args.folders[0]) / "report"
    else:
        out = new_report_folder(Path("outputs/reports"))
    with publish(out) as staging:  # built aside, then moved in whole: a concurrent report never mixes in
        build_report(runs, staging, args.folders)
    used = sum(r.usable for r in runs)
    print(f"report: {out / 'report.md'} ({used} run(s) used, {len(runs) - used} listed as not used)")
    if not used:
        print("error: no finished run with a test accuracy under " + ", ".join(args.folders), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
