"""Test data: a tiny learnable dataset in the MNIST IDX format (the tests' stand-in for Fashion-MNIST)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from src.data.idx import write_idx
from src.data.sources import FILENAMES, SPLITS


def make_synthetic_dataset(
    folder: str | Path,
    n_train: int = 600,
    n_test: int = 200,
    num_classes: int = 10,
    seed: int = 0,
    image_size: int = 28,
) -> dict[str, Path]:
    """Write four gzip IDX files with a learnable class pattern into ``folder``; return ``{key: path}``.

    Class c is a bright square in cell c of a ceil(sqrt(num_classes))-wide grid, jittered by a
    pixel, over uniform noise: a tiny CNN (or even nearest-centroid) separates the classes in a
    few steps. Sizes differ from upstream, so locate() checks these files structurally only.
    """
    if not 1 <= num_classes <= 256:
        raise ValueError("num_classes must be in 1..256 (labels are uint8)")
    grid = math.ceil(math.sqrt(num_classes))
    cell = image_size // grid
    if cell < 3:
        raise ValueError(f"image_size {image_size} too small for {num_classes} classes")
    side = max(1, cell - 2)  # leaves one pixel each side for the jitter
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % num_classes  # balanced
        rng.shuffle(labels)
        images = rng.integers(0, 80, size=(n, image_size, image_size), dtype=np.int16)
        jitter = rng.integers(0, 3, size=(n, 2))
        brightness = rng.integers(170, 256, size=n)
        for i, (c, (dy, dx)) in enumerate(zip(labels, jitter, strict=True)):
            y0 = (c // grid) * cell + dy
            x0 = (c % grid) * cell + dx
            images[i, y0 : y0 + side, x0 : x0 + side] = brightness[i]
        ik, lk = SPLITS[split]
        out[ik] = write_idx(folder / FILENAMES[ik], images.clip(0, 255).astype(np.uint8))
        out[lk] = write_idx(folder / FILENAMES[lk], labels.astype(np.uint8))
    return out


def write_as(idx_root: str | Path, data: str, folder: str | Path) -> Path:
    """The synthetic IDX set of ``idx_root`` as ``data=folder`` (PNGs) or ``data=arrays`` (an .npz)
    under ``folder``; returns what ``data.root`` names."""
    from src.data.export_png import main as export_png
    from src.data.sources import read_split

    folder = Path(folder)
    if data == "folder":
        export_png(["--out", str(folder / "png"), "--root", str(idx_root)])
        return folder / "png"
    files = {key: Path(idx_root) / name for key, name in FILENAMES.items()}
    arrays = {}
    for split in SPLITS:
        images, labels = read_split("fashion_mnist", files, split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images.numpy(), labels.numpy()
    np.savez(folder / "synthetic.npz", **arrays)
    return folder / "synthetic.npz"
