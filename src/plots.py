"""Matplotlib figures shared by TensorBoard logging and the report."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard and PNG files, never a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix (colour = share of the true class) annotated with counts."""
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(rows, 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=6,
                        color=colour)
    total = counts.sum()
    acc = np.trace(counts) / max(total, 1)
    ax.set_title(f"{title} (n={total}, acc={acc:.2%})".strip(), fontsize=9)
    fig.tight_layout()
    return fig
