"""An ``.npz`` of arrays: ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``class_names``.

Images are uint8, ``(N, H, W)`` (grey) or ``(N, H, W, C)`` with C = 1 or 3 (channels last, as
numpy and Keras hold them); labels are integers in ``[0, K)``, K = ``len(class_names)`` when the
file names the classes, else the largest label + 1. Every class needs training and test images.
Read with ``allow_pickle=False``: an ``.npz`` never runs code. Every problem is a ``DatasetError``
of one line that names the file and the array.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.errors import DatasetError

KEYS = ("x_train", "y_train", "x_test", "y_test")
LAYOUT = ("an arrays file holds x_train, y_train, x_test, y_test (uint8 images (N, H, W) or (N, H, W, C), "
          "integer labels (N,)) and optionally class_names")


@dataclass(frozen=True)
class Header:
    """What the file holds, read from the array headers alone (no pixel is read)."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, np.dtype]

    @property
    def channels(self) -> int:
        shape = self.shapes["x_train"]
        return 1 if len(shape) == 3 else shape[3]

    @property
    def height_width(self) -> tuple[int, int]:
        return self.shapes["x_train"][1], self.shapes["x_train"][2]


def _array_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(f)
    return tuple(int(s) for s in shape), dtype


def read_header(path: str | Path) -> Header:
    """The shapes and dtypes of the file's arrays, checked; DatasetError on any problem."""
    path = Path(path).expanduser()
    try:
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
            missing = [key for key in KEYS if key not in members]
            if missing:
                raise DatasetError(f"{path} lacks {', '.join(missing)}: {LAYOUT} (it has: "
                                   f"{', '.join(sorted(members)) or 'no arrays'})")
            wanted = [*KEYS, *(["class_names"] if "class_names" in members else [])]
            headers = {key: _array_header(archive, members[key]) for key in wanted}
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as err:
        raise DatasetError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from None
    shapes = {key: shape for key, (shape, _) in headers.items()}
    dtypes = {key: dtype for key, (_, dtype) in headers.items()}
    header = Header(path, shapes, dtypes)
    _check_header(header)
    return header


def _image_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(H, W, C) of an (N, H, W) or (N, H, W, C) array."""
    return (shape[1], shape[2], 1 if len(shape) == 3 else shape[3])


def _check_header(h: Header) -> None:
    for split in ("train", "test"):
        x, y = f"x_{split}", f"y_{split}"
        if h.dtypes[x] != np.uint8:
            raise DatasetError(f"{h.path}: {x} is {h.dtypes[x]}, must be uint8 images (0-255), e.g. "
                               "(x * 255 / x.max()).round().astype(np.uint8)")
        shape = h.shapes[x]
        if not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
            raise DatasetError(f"{h.path}: {x} has shape {shape}, must be (N, H, W) or (N, H, W, C) with C = 1 or 3")
        if shape[0] == 0 or min(shape[1:3]) == 0:
            raise DatasetError(f"{h.path}: {x} holds no image (shape {shape})")
        dtype = h.dtypes[y]
        if dtype.kind not in "iu":
            raise DatasetError(f"{h.path}: {y} is {dtype}, must be integer class labels (e.g. y.astype(np.int64))")
        if h.shapes[y] != (shape[0],):
            raise DatasetError(f"{h.path}: {y} has shape {h.shapes[y]}, must be ({shape[0]},): one label per "
                               f"image of {x}")
    train, test = _image_shape(h.shapes["x_train"]), _image_shape(h.shapes["x_test"])
    if train != test:
        raise DatasetError(f"{h.path}: x_train images are {train} (H, W, C) but x_test images are {test}: "
                           "both splits need images of one shape")
    if "class_names" in h.shapes:
        names = h.dtypes["class_names"]
        if names.kind not in "US" or len(h.shapes["class_names"]) != 1:
            raise DatasetError(f"{h.path}: class_names is {names} with shape {h.shapes['class_names']}, must be a "
                               "1-D array of strings, e.g. np.array(['cat', 'dog'])")


@dataclass
class Arrays:
    images: dict[str, np.ndarray]  # split -> uint8 (N, H, W) or (N, C, H, W), channels first
    labels: dict[str, np.ndarray]  # split -> int64 (N,)
    class_names: tuple[str, ...]
    sha256: str
    bytes: int


def class_names_of(path: Path, labels: dict[str, np.ndarray], names: np.ndarray | None) -> tuple[str, ...]:
    """The class names, with the labels checked against them (range, every class in both splits)."""
    high = max(int(y.max()) for y in labels.values())
    if names is not None:
        classes = tuple(str(n) for n in names.tolist())
        if len(set(classes)) != len(classes) or not all(c.strip() for c in classes):
            raise DatasetError(f"{path}: class_names must be unique non-empty strings, got {list(classes)}")
    else:
        classes = tuple(str(k) for k in range(high + 1))
    for split, y in labels.items():
        bad = y[(y < 0) | (y >= len(classes))]
        if len(bad):
            allowed = f"{len(classes)} class_names" if names is not None else "labels must be >= 0"
            raise DatasetError(f"{path}: y_{split} holds label {int(bad[0])}, out of range [0, {len(classes) - 1}] "
                               f"({allowed})")
        counts = np.bincount(y, minlength=len(classes))
        if (counts == 0).any():
            k = int(np.flatnonzero(counts == 0)[0])
            raise DatasetError(f"{path}: class {k} ({classes[k]!r}) has no image in y_{split}: every class needs "
                               "training and test images")
    return classes


def read_arrays(path: str | Path) -> Arrays:
    """The four arrays (images channels first), checked; DatasetError on any problem."""
    header = read_header(path)
    path = header.path
    try:
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
            names = npz["class_names"] if "class_names" in header.shapes else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from None
    labels = {split: arrays[f"y_{split}"].astype(np.int64) for split in ("train", "test")}
    classes = class_names_of(path, labels, names)
    images = {}
    for split in ("train", "test"):
        x = arrays[f"x_{split}"]
        if x.ndim == 4:
            x = x[..., 0] if x.shape[3] == 1 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        images[split] = x
    return Arrays(images, labels, classes, hashlib.sha256(raw).hexdigest(), len(raw))


def conform(images: np.ndarray, channels: int, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Images (N, H, W) or (N, C, H, W) with the asked channel count and (height, width), through
    Pillow (grey <-> colour, bilinear resize) only where they differ; returns them and how many
    were resized."""
    from PIL import Image

    own_channels = 1 if images.ndim == 3 else images.shape[1]
    if own_channels == channels and images.shape[-2:] == size:
        return images, 0
    height, width = size
    n = len(images)
    out = np.empty((n, height, width) if channels == 1 else (n, channels, height, width), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, pixels in enumerate(images):
        image = Image.fromarray(pixels if own_channels == 1 else pixels.transpose(1, 2, 0)).convert(mode)
        if (image.height, image.width) != size:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        converted = np.asarray(image)
        out[i] = converted if channels == 1 else converted.transpose(2, 0, 1)
    return out, n if images.shape[-2:] != size else 0
