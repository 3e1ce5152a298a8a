"""What is known about each MNIST-family dataset: its four IDX files (names, sizes, upstream
checksums), its mirrors and its names; looked up by ``dataset_spec`` (the config's exact name) or
``get_spec`` (also the dashed and alias spellings)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.config.checks import fail
from src.errors import DatasetError

# split -> (images key, labels key)
SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train_images", "train_labels"),
    "test": ("test_images", "test_labels"),
}
FILENAMES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class FileSpec:
    """One of a dataset's four files and what is known about the upstream copy."""

    key: str  # train_images | train_labels | test_images | test_labels
    filename: str  # the upstream (gzip) name; the raw name is the same without ".gz"
    size: int | None = None  # decompressed size of the upstream file
    sha256: str | None = None  # sha256 of the decompressed content
    md5_gz: str | None = None  # md5 of the upstream gzip bytes

    @property
    def raw_name(self) -> str:
        return self.filename.removesuffix(".gz")

    @property
    def has_checksum(self) -> bool:
        return bool(self.sha256 or self.md5_gz)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    num_train: int
    num_test: int
    files: Mapping[str, FileSpec]
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[Path, ...] = ()
    apt_package: str | None = None  # Debian/Ubuntu package that installs the files into system_dirs
    aliases: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _files(
    num_train: int, num_test: int, md5_gz: Mapping[str, str], sha256: Mapping[str, str] | None = None
) -> dict[str, FileSpec]:
    sha256 = sha256 or {}
    counts = {"train": num_train, "test": num_test}
    out = {}
    for split, (ik, lk) in SPLITS.items():
        n = counts[split]
        # IDX header: 4 magic bytes + 4 bytes per dim (3 dims for images, 1 for labels).
        sizes = {ik: 16 + n * 28 * 28, lk: 8 + n}
        for key in (ik, lk):
            out[key] = FileSpec(key, FILENAMES[key], sizes[key], sha256.get(key), md5_gz.get(key))
    return out


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),  # fmt: skip
        num_train=60000,
        num_test=10000,
        files=_files(
            60000,
            10000,
            md5_gz={
                "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
                "test_images": "bef4ecab320f06d8554ea6380940ec79",
                "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            # Measured from Debian's dataset-fashion-mnist package (same content as upstream).
            sha256={
                "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        apt_package="dataset-fashion-mnist",
        aliases=("fashion-mnist", "fashionmnist"),
    ),
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(str(i) for i in range(10)),
        num_train=60000,
        num_test=10000,
        files=_files(
            60000,
            10000,
            md5_gz={
                "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
                "test_images": "9fb629c4189551a2d022fa330f9573f3",
                "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
            },
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    ),
}


def dataset_spec(name: Any) -> DatasetSpec:
    """The dataset ``data.name`` names (exactly, as in the config); a ``ConfigError`` otherwise."""
    if not isinstance(name, str) or name not in DATASETS:
        fail("data.name", name, f"must be one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """Look a dataset up by name ("fashion_mnist", "fashion-mnist", "mnist"); specs pass through."""
    if isinstance(name, DatasetSpec):
        return name
    key = name.strip().lower()
    for spec in DATASETS.values():
        if key in (spec.name, spec.name.replace("_", "-"), *spec.aliases):
            return spec
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
