"""``python -m src.data.export_png --out DIR``: an IDX dataset written out as a folder of PNGs.

The folder is what ``data=folder`` reads: ``DIR/train/<k>_<class>/<index>.png`` and the same under
``test/``. The class folders are prefixed with the label (``0_T-shirt_top``) so that their sorted
order is the IDX label order, and each file is named by the image's position in its IDX file
(zero-padded), which is the order ``data=folder`` numbers images in. So the same ``data.split_seed``
and ``seed`` give the same split and the same batches as the IDX run: the proof that the folder path
trains to the same figures (experiments/png_folder/). PNG is lossless, so the pixels are the same.

Written into a temporary folder beside ``DIR`` and renamed into place at the end: an interrupted
export leaves no half-written ``DIR``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from src.data.datamodule import data_roots
from src.data.sources import DATASETS, locate, read_split
from src.errors import DatasetError


def class_folder(label: int, name: str, width: int) -> str:
    """``0_T-shirt_top``: the label first (sorted order = label order), then a file-system-safe name."""
    return f"{label:0{width}d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_')}"


def export(images: np.ndarray, labels: np.ndarray, class_names: list[str], folder: Path) -> int:
    """Write ``images`` (uint8 N x H x W) as ``folder/<class folder>/<index>.png``; returns the count."""
    from PIL import Image

    width = len(str(len(class_names) - 1))
    digits = len(str(max(len(labels) - 1, 0)))
    names = [class_folder(k, n, width) for k, n in enumerate(class_names)]
    for name in names:  # an empty class folder would be refused by data=folder: create only used ones
        if np.any(labels == names.index(name)):
            (folder / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image).save(folder / names[int(label)] / f"{i:0{digits}d}.png")
    return len(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the folder to create (must not exist)")
    parser.add_argument("--name", default="fashion_mnist", choices=sorted(DATASETS))
    parser.add_argument("--root", default=os.environ.get("MARGINLOSS_DATA"),
                        help="where the IDX files are (as data.root; default: the automatic search)")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists():
        print(f"error: {out} exists; name a new folder (nothing was written)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        folder, fallback = data_roots(args.name, args.root, False)
        files = locate(args.name, folder, download=False, verify=True, fallback=fallback or args.root is None)
        names = list(DATASETS[args.name].class_names)
        counts = {}
        for split in ("train", "test"):
            images, labels = read_split(args.name, files, split)
            counts[split] = export(images.numpy(), labels.numpy(), names, tmp / split)
        os.replace(tmp, out)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.name}: wrote {counts['train']} training and {counts['test']} test PNGs into {out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
