"""Matplotlib figures shared by TensorBoard logging and the report."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard and PNG files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

# TensorBoard shows images scaled to its card width (about 330-400 px): a figure about 400 px wide
# is drawn nearly at full size there, so its text stays readable without a click.
CONFUSION_SIZE_IN = (4.1, 3.6)
CONFUSION_DPI = 100


def share_label(count: int, total: int) -> str:
    """A count's share of its row as a percentage that never reads 0% for a non-zero count."""
    if count == 0 or total == 0:
        return "0%"
    share = 100.0 * count / total
    if share < 1.0:
        return "<1%"
    if count < total and share > 99.0:
        return ">99%"
    return f"{share:.0f}%"


def _short(name: str, width: int = 8) -> str:
    return name if len(name) <= width else name[: width - 1] + "."


def draw_confusion(ax: Axes, matrix: np.ndarray, class_names: list[str], *, compact: bool = False) -> AxesImage:
    """One confusion matrix on ``ax``: colour = share of the true class, each non-zero cell
    annotated with its count. The full figure (``compact=False``, TensorBoard) also gives each
    diagonal cell the class's recall and shortens long names; a panel of the report's grid
    (``compact=True``) writes full names, turned upright, in smaller type. Returns the image (for a
    colour bar)."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(rows, 1)
    n = len(class_names)
    image = ax.imshow(share * 100.0, cmap="Blues", vmin=0.0, vmax=100.0)
    small = n > 10  # more classes: smaller text so the numbers still fit their cells
    if compact:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), class_names, fontsize=6)
    else:
        ax.set_xticks(range(n), [_short(c) for c in class_names], rotation=50, ha="right", rotation_mode="anchor",
                      fontsize=6 if small else 7)
        ax.set_yticks(range(n), [_short(c) for c in class_names], fontsize=6 if small else 7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    for i in range(n):
        for j in range(n):
            if not counts[i, j]:
                continue
            text = f"{counts[i, j]}"
            if i == j and not compact:
                text += f"\n{share_label(int(counts[i, j]), int(rows[i, 0]))}"
            colour = "white" if share[i, j] > (0.5 if compact else 0.55) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=4.5 if compact else 5 if small else 7,
                    color=colour, linespacing=0.85)
    return image


def accuracy(matrix: np.ndarray) -> float:
    """The share of the matrix on its diagonal (0 for an empty matrix)."""
    counts = np.asarray(matrix, dtype=np.int64)
    return float(np.trace(counts) / max(int(counts.sum()), 1))


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str = "") -> Figure:
    """Confusion matrix (``draw_confusion``) with a colour bar and the accuracy in the title."""
    fig, ax = plt.subplots(figsize=CONFUSION_SIZE_IN, dpi=CONFUSION_DPI, layout="constrained")
    image = draw_confusion(ax, matrix, class_names)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("% of the true class", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    total = int(np.asarray(matrix).sum())
    ax.set_title(f"{title}\nacc {accuracy(matrix):.2%} of {total}".strip(), fontsize=8)
    return fig
