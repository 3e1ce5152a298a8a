"""Embeddings you can see.

* For 2-D and 3-D embeddings (``backbone=small2d|small3d``): every ``every_n_epochs`` epochs a
  validation subsample is embedded and drawn per class, raw (plane / 3-D space) and normalised
  (unit circle / unit sphere), with the class-weight directions; logged to TensorBoard as the
  figures ``embeddings/raw`` and ``embeddings/normalized`` and saved as
  ``<dirpath>/epochXXX.png`` (both panels side by side). Other sizes skip this (no cost).
* For 2-D and 3-D embeddings, with ``test_path`` set: at the end of the test, every test
  embedding with its label, label-free prediction, the class directions and the class names goes
  to ``test_path`` (a compressed ``.npz`` of a few hundred KB, small enough to commit beside the
  run record; ``load_test_embeddings`` reads it back). Figures can then be redrawn without the
  checkpoint (``python -m src.report.embedding_demo``).
* For any backbone: at the end of the test, a test subsample goes to TensorBoard's projector
  (``add_embedding``, tag ``test``) with the class names as metadata and the images as
  thumbnails.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from src.analysis.embeddings import embed_batches, thumbnails
from src.utils.plots import plt  # matplotlib with the headless backend already selected

log = logging.getLogger(__name__)
# The arrays a test-embeddings file holds (``save_test_embeddings`` / ``load_test_embeddings``).
TEST_ARRAYS = ("embeddings", "labels", "predictions", "directions", "class_names")


def _first_loader(loaders: Any) -> Any:
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


def draw_embeddings(ax: Any, points: np.ndarray, labels: np.ndarray, names: list[str], weights: np.ndarray | None,
                    normalized: bool, title: str) -> None:
    """One panel: ``points`` (2-D or 3-D) coloured by class and named in the legend, raw or on the unit
    circle / sphere (``normalized``), with each class direction (``weights``, (C, D) or (C, K, D))
    drawn from the origin; used by the per-epoch figures and ``src.report.embedding_demo``."""
    dim = points.shape[1]
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    if normalized:
        points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
        if dim == 2:
            t = np.linspace(0, 2 * np.pi, 200)
            ax.plot(np.cos(t), np.sin(t), color="0.8", lw=0.8, zorder=0)
        else:
            u, v = np.mgrid[0 : 2 * np.pi : 24j, 0 : np.pi : 12j]
            ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    for c, name in enumerate(names):
        sel = labels == c
        if sel.any():
            ax.scatter(*points[sel].T, s=4, alpha=0.6, color=colours(c % colours.N), label=name)
    if weights is not None and len(weights) == len(names):
        # (C, K, D): K directions per class (sub-centre heads have K > 1); (C, D) means K = 1.
        weights = weights[:, None, :] if weights.ndim == 2 else weights
        extent = 1.15 if normalized else float(np.percentile(np.linalg.norm(points, axis=1), 95)) or 1.0
        directions = weights / np.maximum(np.linalg.norm(weights, axis=-1, keepdims=True), 1e-12) * extent
        for c, rows in enumerate(directions):
            for w in rows:
                ax.plot(*np.stack([np.zeros(dim), w]).T, color=colours(c % colours.N), lw=1.2)
    # Equal scales on every axis, so that angles read true (3-D too: a stretched sphere hides margins).
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title, fontsize=9)


def embedding_figures(points: np.ndarray, labels: np.ndarray, names: list[str], weights: np.ndarray | None,
                      title: str) -> dict[str, Any]:
    """Figures ``raw``, ``normalized`` and ``both`` (side by side) for 2-D or 3-D ``points``."""
    dim = points.shape[1]
    if dim not in (2, 3):
        raise ValueError(f"embedding figures need 2-D or 3-D embeddings, got {dim}-D")
    kw = {"projection": "3d"} if dim == 3 else {}
    figures = {}
    for key, normalized in (("raw", False), ("normalized", True)):
        fig = plt.figure(figsize=(5, 5), dpi=100)
        draw_embeddings(fig.add_subplot(1, 1, 1, **kw), points, labels, names, weights, normalized, f"{title} {key}")
        figures[key] = fig
    both = plt.figure(figsize=(11, 5), dpi=100)
    for i, normalized in enumerate((False, True)):
        ax = both.add_subplot(1, 2, i + 1, **kw)
        panel = f"{title} {'normalized' if normalized else 'raw'}"
        draw_embeddings(ax, points, labels, names, weights, normalized, panel)
    handles, texts = both.axes[0].get_legend_handles_labels()
    both.legend(handles, texts, loc="center right", fontsize=7, markerscale=3)
    both.subplots_adjust(right=0.84)
    figures["both"] = both
    return figures


def save_test_embeddings(path: str | Path, embeddings: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                         directions: np.ndarray, class_names: list[str]) -> Path:
    """Write one test set's embeddings (float32), labels, predictions, (C, K, D) class directions and
    class names to ``path`` (compressed ``.npz``), atomically: a run killed mid-write leaves no
    truncated file for a figure to trip on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:  # a file object: np.savez would append .npz to a bare name
        np.savez_compressed(
            handle,
            embeddings=np.asarray(embeddings, dtype=np.float32),
            labels=np.asarray(labels, dtype=np.int16),
            predictions=np.asarray(predictions, dtype=np.int16),
            directions=np.asarray(directions, dtype=np.float32),
            class_names=np.asarray(class_names, dtype=str),
        )
    os.replace(tmp, path)
    return path


def load_test_embeddings(path: str | Path) -> dict[str, Any]:
    """What ``save_test_embeddings`` wrote: arrays by name, ``class_names`` as a list of str."""
    with np.load(Path(path), allow_pickle=False) as data:
        missing = [key for key in TEST_ARRAYS if key not in data.files]
        if missing:
            raise ValueError(f"{path}: not a test-embeddings file (missing {', '.join(missing)})")
        out: dict[str, Any] = {key: data[key] for key in TEST_ARRAYS}
    out["class_names"] = [str(name) for name in out["class_names"]]
    return out


class EmbeddingPlotter(pl.Callback):
    def __init__(
        self,
        dirpath: str | Path | None = None,
        max_points: int = 2000,
        every_n_epochs: int = 1,
        save_png: bool = True,
        projector: bool = True,
        projector_samples: int = 1000,
        test_path: str | Path | None = None,
    ) -> None:
        self.dirpath = Path(dirpath) if dirpath else None
        self.test_path = Path(test_path) if test_path else None
        self.max_points, self.every_n_epochs = int(max_points), max(1, int(every_n_epochs))
        self.save_png, self.projector, self.projector_samples = save_png, projector, int(projector_samples)

    @staticmethod
    def _tensorboards(trainer: pl.Trainer) -> list[TensorBoardLogger]:
        return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        head = getattr(pl_module, "head", None)
        dim = getattr(head, "embedding_dim", None)
        if dim not in (2, 3) or trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs and epoch + 1 != trainer.max_epochs:
            return
        loader = _first_loader(trainer.val_dataloaders)
        if loader is None:
            return
        emb, labels, _ = embed_batches(pl_module, loader, limit=self.max_points)
        weights = head.class_directions().detach().float().cpu().numpy() if hasattr(head, "class_directions") else None
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(int(labels.max()) + 1)]))
        figures = embedding_figures(emb.numpy(), labels.numpy(), names, weights, f"val epoch {epoch}")
        for logger in self._tensorboards(trainer):
            for key in ("raw", "normalized"):
                logger.experiment.add_figure(f"embeddings/{key}", figures[key], global_step=trainer.global_step,
                                             close=False)
        if self.save_png and self.dirpath is not None:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            figures["both"].savefig(self.dirpath / f"epoch{epoch:03d}.png")
        for fig in figures.values():
            plt.close(fig)

    def _save_test(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        head = getattr(pl_module, "head", None)
        results = getattr(pl_module, "results", None)
        if (self.test_path is None or getattr(head, "embedding_dim", None) not in (2, 3) or results is None
                or not trainer.is_global_zero):
            return
        if trainer.world_size > 1:  # each process kept only its shard of the test set
            log.warning("test embeddings not saved to %s: the test ran on %d processes", self.test_path,
                        trainer.world_size)
            return
        if not results.test_embeddings:
            return
        names = list(getattr(pl_module, "class_names", []))
        path = save_test_embeddings(
            self.test_path,
            torch.cat(results.test_embeddings).numpy(),
            torch.cat(results.test_labels).numpy(),
            torch.cat(results.test_predictions).numpy(),
            head.class_directions().detach().float().cpu().numpy(),
            names or [str(i) for i in range(head.num_classes)],
        )
        log.info("test embeddings saved to %s", path)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_test(trainer, pl_module)
        tensorboards = self._tensorboards(trainer)
        loader = _first_loader(trainer.test_dataloaders)
        if not self.projector or not tensorboards or loader is None or not trainer.is_global_zero:
            return
        emb, labels, images = embed_batches(pl_module, loader, limit=self.projector_samples, keep_images=True)
        names = list(getattr(pl_module, "class_names", []))
        metadata = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in labels]
        thumbs = thumbnails(images, getattr(loader, "mean", 0.0), getattr(loader, "std", 1.0))
        for logger in tensorboards:
            logger.experiment.add_embedding(emb, metadata=metadata, label_img=thumbs,
                                            global_step=trainer.global_step, tag="test")
