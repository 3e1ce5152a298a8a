"""What a data config feeds a backbone: channels, image size and classes, known before any training.

``input_info(data)`` answers from the data config alone: for the IDX datasets from their
registry entry (1 x 28 x 28, ten classes), for ``data=folder`` from the folder listing and the
first image's header, for ``data=arrays`` from the ``.npz`` array headers and labels. Nothing is
decoded. The backbones receive the answer by interpolation (``in_channels: ${data_shape:channels}``,
``image_size: ${data_shape:image_size}``, the ``data_shape`` resolver of ``src.training.compose``),
so nobody types a channel count by hand, and the resolved config records it.

``check_fits`` refuses a dataset whose decoded images would not fit in memory, in one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.config.checks import check_int, check_number, fail, is_int
from src.errors import DatasetError

FORMATS = ("idx", "folder", "arrays")
IDX_SIZE = 28  # the MNIST family's images are 28 x 28, one channel
GIB = 1024**3


@dataclass(frozen=True)
class InputInfo:
    channels: int
    height: int
    width: int
    class_names: tuple[str, ...]
    num_train: int
    num_test: int
    first: str  # the image (or array) that set the shape, for error messages

    @property
    def image_size(self) -> int | list[int]:
        """An int for square images (28), else [height, width]: what ``backbone.image_size`` receives."""
        return self.height if self.height == self.width else [self.height, self.width]

    def decoded_bytes(self) -> int:
        """uint8 images and int64 labels of both splits."""
        n = self.num_train + self.num_test
        return n * (self.channels * self.height * self.width + 8)


def data_format(data: Mapping[str, Any]) -> str:
    fmt = data.get("format", "idx")  # the IDX configs predate the key
    if fmt not in FORMATS:
        fail("data.format", fmt, f"must be one of {', '.join(FORMATS)}")
    return fmt


def requested_size(value: Any) -> tuple[int, int] | None:
    """``data.image_size``: null, an integer (square) or [height, width]; as (height, width)."""
    if value is None:
        return None
    if is_int(value):
        return (check_int("data.image_size", value, 1),) * 2  # type: ignore[return-value]
    listed = isinstance(value, Sequence) and not isinstance(value, str)  # a list, or OmegaConf's ListConfig
    if listed and len(value) == 2 and all(is_int(v) and v >= 1 for v in value):
        return int(value[0]), int(value[1])
    fail("data.image_size", list(value) if listed else value,
         "must be null (the images' own size), an integer >= 1 (square) or [height, width]")


def requested_channels(value: Any) -> int | None:
    if value is not None and (not is_int(value) or value not in (1, 3)):
        fail("data.channels", value, "must be null (as the images are), 1 (grey) or 3 (colour)")
    return value


def memory_limit(value: Any) -> float | None:
    return check_number("data.memory_limit_gb", value, 0.0, low_open=True, null=True)


def _root(data: Mapping[str, Any], fmt: str) -> Path:
    root = data.get("root")
    what = "a folder holding train/ and test/" if fmt == "folder" else "the path of an .npz file"
    if not isinstance(root, str) or not root:
        fail("data.root", root, f"must be {what}")
    path = Path(root).expanduser()
    if fmt == "folder" and not path.is_dir():
        fail("data.root", root, f"no such folder; data=folder needs {what}")
    if fmt == "arrays" and not path.is_file():
        fail("data.root", root, f"no such file; data=arrays needs {what}")
    return path


_ARRAY_CLASSES: dict[tuple, tuple[str, ...]] = {}


def _array_classes(path: Path) -> tuple[str, ...]:
    """The class names of an ``.npz`` (its labels are read and checked; cached per file version)."""
    import numpy as np

    from src.data.arrays import class_names_of

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _ARRAY_CLASSES:
        with np.load(path, allow_pickle=False) as npz:
            labels = {split: npz[f"y_{split}"].astype(np.int64) for split in ("train", "test")}
            names = npz["class_names"] if "class_names" in npz.files else None
        _ARRAY_CLASSES.clear()
        _ARRAY_CLASSES[key] = class_names_of(path, labels, names)
    return _ARRAY_CLASSES[key]


def input_info(data: Mapping[str, Any]) -> InputInfo:
    """Channels, size, classes and image counts of the dataset ``data`` configures (nothing decoded).

    Raises ConfigError for a bad option, DatasetError for files that cannot be what they claim."""
    fmt = data_format(data)
    if fmt == "idx":
        from src.data.sources import dataset_spec

        spec = dataset_spec(data.get("name"))
        return InputInfo(1, IDX_SIZE, IDX_SIZE, spec.class_names, spec.num_train, spec.num_test, spec.name)
    size = requested_size(data.get("image_size"))
    channels = requested_channels(data.get("channels"))
    path = _root(data, fmt)
    if fmt == "folder":
        from src.data.folder import first_image, list_folder

        listing = list_folder(path)
        first, own_channels, height, width = first_image(listing)
        classes, n_train, n_test = listing.class_names, listing.count("train"), listing.count("test")
    else:
        from src.data.arrays import read_header

        header = read_header(path)
        first, own_channels = f"{path}:x_train", header.channels
        height, width = header.height_width
        classes = _array_classes(path)
        n_train, n_test = header.shapes["x_train"][0], header.shapes["x_test"][0]
    height, width = size or (height, width)
    return InputInfo(channels or own_channels, height, width, classes, n_train, n_test, first)


def shape_value(what: str, data: Mapping[str, Any]) -> Any:
    """The ``data_shape`` resolver's answer: ``channels``, ``image_size``, ``height``, ``width`` or
    ``num_classes`` of the configured dataset (held-out classes are not subtracted)."""
    info = input_info(data)
    values = {"channels": info.channels, "image_size": info.image_size, "height": info.height,
              "width": info.width, "num_classes": len(info.class_names)}
    if what not in values:
        raise ValueError(f"data_shape knows {', '.join(values)}, not {what!r}")
    return values[what]


# ----------------------------------------------------------------------------------------------
# Memory


def available_memory() -> int | None:
    """Bytes of memory this machine can give now (Linux MemAvailable; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 100 else f"{n / 1024**2:.1f} MiB"


def check_fits(
    nbytes: int, what: str, where: str, limit_gb: float | None, free: int | None = None, device: str = "memory",
) -> None:
    """DatasetError (one line: how large, what the limit is) when ``nbytes`` exceed the limit:
    ``limit_gb`` GiB when set, else half of ``free`` (default: the memory available now)."""
    if limit_gb is not None:
        limit, why = int(limit_gb * GIB), f"data.memory_limit_gb={limit_gb:g}"
    else:
        free = available_memory() if free is None else free
        if free is None:
            return
        limit, why = free // 2, f"half of the {_gib(free)} of {device} available now; data.memory_limit_gb sets it"
    if nbytes > limit:
        raise DatasetError(f"{where}: the decoded dataset is too large: {_gib(nbytes)} ({what}) but the limit is "
                           f"{_gib(limit)} ({why}); use fewer or smaller images (data.image_size)")


def check_own_data(data: Mapping[str, Any]) -> InputInfo:
    """The config pass for ``data=folder`` / ``data=arrays``: their own keys, then the files' listing
    or headers (nothing decoded). The keys they share with the IDX configs are checked by the caller."""
    from src.config.checks import check_bool

    fmt = data_format(data)
    requested_size(data.get("image_size"))
    requested_channels(data.get("channels"))
    memory_limit(data.get("memory_limit_gb"))
    if fmt == "folder":
        check_bool("data.cache", data.get("cache", True))
        cache_dir = data.get("cache_dir")
        if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
            fail("data.cache_dir", cache_dir, "must be a folder path or null (~/.cache/marginloss/decoded)")
    _root(data, fmt)
    return input_info(data)
