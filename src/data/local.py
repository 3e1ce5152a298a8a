"""Datamodules for your own images: ``data=folder`` (PNG/JPEG files) and ``data=arrays`` (an ``.npz``).

Both are ``ImageClassificationData`` with another reader: the same split carved with
``data.split_seed``, the same held-out classes, the same uint8 tensors on the training device and
batches cut by one index gather (``src.data.batches``). What differs is where the images come from,
and that the channel count, image size and classes are the data's (``src.data.inputs``).

The run record's ``data_files`` names the data by fingerprint: for a folder, per split, the sha256
of its ``sha256sum`` manifest with the file count and bytes; for an ``.npz``, the sha256 of the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from src.data import cache
from src.data.datamodule import ImageClassificationData
from src.data.inputs import InputInfo, check_fits, input_info, memory_limit, requested_channels, requested_size
from src.errors import DatasetError

log = logging.getLogger(__name__)
SPLITS = ("train", "test")


class _OwnImages(ImageClassificationData):
    """The shared part: options, the memory check, the one load that both splits come from."""

    format = ""

    def __init__(
        self, root: str, name: str, format: str, image_size: Any = None, channels: int | None = None,
        memory_limit_gb: float | None = None, **options: Any,
    ) -> None:
        if format != self.format:
            raise ValueError(f"{type(self).__name__} reads data.format={self.format}, not {format!r}")
        self.image_size = requested_size(image_size)
        self.channels = requested_channels(channels)
        self.memory_limit_gb = memory_limit(memory_limit_gb)
        self.root = root
        self.info: InputInfo = input_info(self._options())
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._provenance: dict[str, Any] | None = None
        super().__init__(name=name, root=root, download=False, verify=True, fallback=False, **options)

    def _options(self) -> dict[str, Any]:
        size = list(self.image_size) if self.image_size else None
        return {"format": self.format, "root": self.root, "image_size": size, "channels": self.channels}

    def _dataset_class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.info.channels, self.info.height, self.info.width

    def _describe(self) -> str:
        c, h, w = self.input_shape
        return f"{self.info.num_train + self.info.num_test:,} images of {c}x{h}x{w} uint8"

    def _load(self) -> None:
        raise NotImplementedError

    def _read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._splits:
            self._load()
        return self._splits.pop(split)  # the datamodule keeps its own copy; this one is let go

    def setup(self, stage: str | None = None) -> None:
        device = self._device()
        if device.type == "cuda" and (self._train is None or self._test is None):
            free, _ = torch.cuda.mem_get_info(device)
            check_fits(self.info.decoded_bytes(), self._describe(), f"data.root={self.root}", self.memory_limit_gb,
                       free=free, device=f"GPU memory on {device}")
        super().setup(stage)

    def provenance(self) -> dict[str, Any]:
        """For the run record (``data_files``): the files' fingerprint and how they were decoded."""
        if self._provenance is None:
            self._load()
        return dict(self._provenance or {})


class FolderImageData(_OwnImages):
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (``src.data.folder``), decoded once per
    fingerprint into the cache (``src.data.cache``)."""

    format = "folder"

    def __init__(self, root: str, name: str = "folder", format: str = "folder", cache: bool = True,
                 cache_dir: str | None = None, **options: Any) -> None:
        self.cache, self.cache_dir = bool(cache), cache_dir
        super().__init__(root=root, name=name, format=format, **options)

    def _load(self) -> None:
        from src.data.folder import decode_split, list_folder, read_split

        start = time.perf_counter()
        listing = list_folder(self.root)
        self.info = input_info(self._options())  # the folder as it is now
        if tuple(self.info.class_names) != tuple(self.all_class_names):
            raise DatasetError(f"{self.root}: its class folders changed since the run started; run again")
        check_fits(self.info.decoded_bytes(), self._describe(), f"data.root={self.root}", self.memory_limit_gb)
        c, h, w = self.input_shape
        blobs, prints = {}, {}
        for split in SPLITS:  # every file is read and hashed: the fingerprint is of the bytes
            blobs[split], prints[split] = read_split(listing, split)
        entry = cache.cache_dir(self.cache_dir) / cache.entry_name(
            {split: prints[split]["sha256"] for split in SPLITS}, {"channels": c, "height": h, "width": w})
        found = cache.load(entry) if self.cache else None
        if found is not None and all(len(found[0][f"{s}_labels"]) == listing.count(s) for s in SPLITS):
            arrays, meta = found
            how = f"read from the decoded cache {entry}"
        else:
            arrays, meta = {}, {"resized": {}}
            for split in SPLITS:
                decoded = decode_split(listing, split, blobs[split], c, (h, w), resize=self.image_size is not None,
                                       convert=self.channels is not None, first=self.info.first)
                arrays[f"{split}_images"], arrays[f"{split}_labels"] = decoded.images, decoded.labels
                meta["resized"][split] = decoded.resized
            if self.cache and cache.save(entry, arrays, meta):
                how = f"decoded by Pillow, written to the decoded cache {entry}"
            else:
                how = "decoded by Pillow" + ("" if self.cache else " (data.cache=false)")
        del blobs
        self._splits = {split: (torch.from_numpy(arrays[f"{split}_images"]),
                                torch.from_numpy(arrays[f"{split}_labels"])) for split in SPLITS}
        seconds = time.perf_counter() - start
        self._provenance = {
            **{split: {**prints[split], "fingerprint": "sha256 of the split's sha256sum manifest (sorted paths)",
                       "resized": int(meta["resized"].get(split, 0))} for split in SPLITS},
            "decoding": {"images": f"{c}x{h}x{w} uint8", "how": how, "seconds": round(seconds, 3)},
        }
        log.info("data=folder: %s from %s in %.2f s (%s)", self._describe(), listing.root, seconds, how)


class ArrayImageData(_OwnImages):
    """An ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (``src.data.arrays``)."""

    format = "arrays"

    def __init__(self, root: str, name: str = "arrays", format: str = "arrays", **options: Any) -> None:
        super().__init__(root=root, name=name, format=format, **options)

    def _load(self) -> None:
        from src.data.arrays import conform, read_arrays

        start = time.perf_counter()
        self.info = input_info(self._options())
        check_fits(self.info.decoded_bytes(), self._describe(), f"data.root={self.root}", self.memory_limit_gb)
        arrays = read_arrays(self.root)
        if tuple(arrays.class_names) != tuple(self.all_class_names):
            raise DatasetError(f"{self.root} changed while it was read (its class names differ); run again")
        c, h, w = self.input_shape
        resized = {}
        for split in SPLITS:
            arrays.images[split], resized[split] = conform(arrays.images[split], c, (h, w))
        self._splits = {split: (torch.from_numpy(arrays.images[split]), torch.from_numpy(arrays.labels[split]))
                        for split in SPLITS}
        seconds = time.perf_counter() - start
        self._provenance = {
            "arrays": {"path": str(Path(self.root).expanduser().resolve()), "sha256": arrays.sha256,
                       "bytes": arrays.bytes,
                       "verified": "x uint8, y integer labels in range, every class in both splits",
                       **{f"{split}_images": int(len(arrays.labels[split])) for split in SPLITS}},
            "decoding": {"images": f"{c}x{h}x{w} uint8", "resized": int(sum(resized.values())),
                         "seconds": round(seconds, 3)},
        }
        log.info("data=arrays: %s from %s in %.2f s", self._describe(), self.root, seconds)
