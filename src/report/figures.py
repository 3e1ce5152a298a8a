"""The report's PNG figures: validation-accuracy curves per loss and the grid of confusion matrices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.report.groups import BASELINE_LOSS, LOSS_ORDER, Group, baseline_for
from src.report.runs import Run


def _curve(runs: Sequence[Run], metric: str = "val/acc") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs and the mean / min / max of ``metric`` over runs (epochs missing in a run are skipped)."""
    per_epoch: dict[int, list[float]] = {}
    for run in runs:
        for epoch, value in run.series(metric):
            per_epoch.setdefault(epoch, []).append(value)
    epochs = np.array(sorted(per_epoch), dtype=int)
    vals = [np.asarray(per_epoch[e]) for e in epochs]
    return (epochs, np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]))


# The accuracy axis spans at least this much, so that a 0.5 pp gap is not drawn across the whole
# height of the figure.
MIN_SPAN = 0.05


def _honest_ylim(ax: Any, values: Sequence[float]) -> None:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_SPAN / 2, middle + MIN_SPAN / 2
    pad = 0.05 * (high - low)
    ax.set_ylim(max(0.0, low - pad), high + pad)


def curve_figures(groups: Sequence[Group], out: Path) -> list[tuple[str, str]]:
    """One PNG per loss: the mean validation accuracy per epoch for each m (band: min..max over
    seeds), the baseline dashed for reference. Returns ``(loss, file name)`` pairs."""
    from src.utils.plots import plt

    written = []
    losses = sorted({g.loss for g in groups}, key=lambda x: (LOSS_ORDER.index(x) if x in LOSS_ORDER else 9, x))
    for loss in losses:
        members = [g for g in groups if g.loss == loss]
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
        drawn, banded, values = 0, False, []
        if loss != BASELINE_LOSS:
            for base in {id(b): b for b in (baseline_for(g, groups) for g in members) if b}.values():
                epochs, mean, _, _ = _curve(base.runs)
                if len(epochs):
                    ax.plot(epochs, mean, "--", color="0.4", label=f"{base.label} (n={len(base.runs)})")
                    values += list(mean)
        for group in members:
            epochs, mean, low, high = _curve(group.runs)
            if not len(epochs):
                continue
            line = ax.plot(epochs, mean, marker="o" if len(epochs) < 15 else None, ms=3,
                           label=f"{group.label} (n={len(group.runs)})")[0]
            if len(group.runs) > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15, lw=0)
                banded = True
            values += [*low, *high]
            drawn += 1
        if drawn:
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel("validation accuracy")
            _honest_ylim(ax, values)
            band = "band = min..max over seeds" if banded else "one seed each: no band"
            ax.set_title(f"{loss}: validation accuracy (mean over seeds; {band}; y axis spans >= "
                         f"{100 * MIN_SPAN:.0f} pp)", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            name = f"curves_{_slug(loss)}.png"
            fig.savefig(out / name)
            written.append((loss, name))
        plt.close(fig)
    return written


def confusion_grid(groups: Sequence[Group], out: Path, name: str = "confusion_grid.png") -> str | None:
    """Row-normalised test confusion matrices (counts summed over seeds), one panel per group,
    each drawn like the TensorBoard figure (``src.utils.plots.draw_confusion``)."""
    from src.utils.plots import accuracy, draw_confusion, plt

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
        draw_confusion(ax, mat, names, compact=True)
        ax.set_title(f"{group.label}\n(n runs={len(group.runs)}, acc={accuracy(mat):.2%})", fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name


def history_panels(panels: Sequence[tuple[str, Sequence[Run], float]], curves: Sequence[tuple[str, str, str]],
                   out: Path, name: str, title: str, ylabel: str) -> str:
    """One panel per ``(title, runs, reported)``: for each ``(history key, label, line style)`` the
    mean over the runs per epoch, in %, and the reported figure as a dotted line."""
    from src.utils.plots import plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), dpi=100, squeeze=False)
    for ax, (panel_title, runs, reported) in zip(axes[0], panels, strict=True):
        for key, label, style in curves:
            epochs, mean, _, _ = _curve(runs, key)
            ax.plot(epochs, 100.0 * mean, style, label=label)
        ax.axhline(reported, color="0.3", lw=0.8, ls=":", label=f"reported {reported:.2f}")
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
