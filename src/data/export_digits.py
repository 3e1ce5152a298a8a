"""``python -m src.data.export_digits --out data/digits.npz``: scikit-learn's 8x8 digits as ``data=arrays``.

``sklearn.datasets.load_digits`` ships with scikit-learn (no download): 1,797 grey 8x8 images of
handwritten digits, 17 grey levels (0-16), ten classes. They are scaled to uint8 (x * 255 / 16,
rounded) and split 80/20, stratified, with a fixed seed, into ``x_train``, ``y_train``, ``x_test``,
``y_test`` and ``class_names`` ("0".."9"). The file is written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from src.utils.io import share_by_umask


def digits_arrays(test_fraction: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": np.array([str(name) for name in digits.target_names])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the .npz to write")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified train/test split")
    args = parser.parse_args(argv)
    arrays = digits_arrays(args.test_fraction, args.seed)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    share_by_umask(fd)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"digits: {len(arrays['y_train'])} training and {len(arrays['y_test'])} test images (8x8 uint8, "
          f"10 classes) written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
