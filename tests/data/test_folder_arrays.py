"""``data=folder`` (PNG/JPEG class folders) and ``data=arrays`` (an .npz): the same in-memory fast
path as the IDX files, a decoded cache keyed by the files' fingerprint, shapes and class names from
the data, and one line for every kind of bad input (nothing half-written)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.data.datamodule import ImageClassificationData
from src.data.export_png import main as export_png
from src.data.local import ArrayImageData, FolderImageData
from src.errors import ConfigError, DatasetError
from src.training.validate import check_config
from tests.conftest import TINY, compose_config
from tests.synthetic import make_synthetic_dataset

CLASSES = ("cat", "dog", "owl")


def _pixels(rng: np.random.Generator, label: int, size: tuple[int, int], colour: bool) -> np.ndarray:
    h, w = size
    image = rng.integers(0, 60, size=(h, w, 3) if colour else (h, w), dtype=np.uint8)
    image[label * h // 3 : (label + 1) * h // 3] = 220  # a learnable band per class
    return image


def make_folder(root: Path, per_class: tuple[int, int] = (8, 3), size: tuple[int, int] = (12, 12),
                colour: bool = False, suffix: str = ".png") -> Path:
    """``root/{train,test}/<class>/<n>.png``: a tiny learnable image folder."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class, strict=True):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_pixels(rng, label, size, colour)).save(folder / f"{label * 100 + i:04d}{suffix}")
    return root


def make_npz(path: Path, n: tuple[int, int] = (30, 9), shape: tuple[int, ...] = (8, 8), **override: object) -> Path:
    rng = np.random.default_rng(1)
    arrays: dict[str, object] = {}
    for split, count in zip(("train", "test"), n, strict=True):
        arrays[f"y_{split}"] = np.arange(count) % 3
        arrays[f"x_{split}"] = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    arrays["class_names"] = np.array(CLASSES)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def folder_data(root: Path, cache_dir: Path, **kw: object) -> FolderImageData:
    dm = FolderImageData(root=str(root), cache_dir=str(cache_dir), val_size=kw.pop("val_size", 6), **kw)
    dm.setup("fit")
    dm.setup("test")
    return dm


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------------------------
# The fast path, the order of the images, the cache, the fingerprint


def test_folder_classes_shapes_and_batches(tmp_path: Path) -> None:
    dm = folder_data(make_folder(tmp_path / "grey"), tmp_path / "cache")
    assert dm.class_names == list(CLASSES) and dm.input_shape == (1, 12, 12) and dm.num_classes == 3
    assert dm._train[0].dtype == torch.uint8 and dm._train[0].shape == (24 - 6, 12, 12)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (18, 1, 12, 12) and x.dtype == torch.float32 and y.dtype == torch.int64
    colour = folder_data(make_folder(tmp_path / "colour", colour=True), tmp_path / "cache")
    assert colour.input_shape == (3, 12, 12) and colour._test[0].shape == (9, 3, 12, 12)
    x, _ = next(iter(colour.test_dataloader()))
    assert x.shape == (9, 3, 12, 12)


def test_an_exported_idx_set_gives_the_idx_path_s_tensors_and_batches(tmp_path: Path) -> None:
    """export_png names files by their IDX position: same split, same batches from the same seeds."""
    make_synthetic_dataset(tmp_path / "idx", n_train=60, n_test=20, seed=3)
    assert export_png(["--out", str(tmp_path / "png"), "--root", str(tmp_path / "idx")]) == 0
    assert export_png(["--out", str(tmp_path / "png"), "--root", str(tmp_path / "idx")]) == 1  # never over a folder
    png = folder_data(tmp_path / "png", tmp_path / "cache", val_size=10, batch_size=16)
    idx = ImageClassificationData(root=str(tmp_path / "idx"), download=False, val_size=10, batch_size=16)
    idx.setup("fit")
    idx.setup("test")
    for ours, theirs in ((png._train, idx._train), (png._val, idx._val), (png._test, idx._test)):
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    for a, b in zip(png.train_dataloader(), idx.train_dataloader(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert png.class_names[0] == "0_T-shirt_top" and png.class_names[9] == "9_Ankle_boot"


def test_the_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(tmp_path: Path) -> None:
    root, cache = make_folder(tmp_path / "d"), tmp_path / "cache"
    first = folder_data(root, cache)
    assert "written to the decoded cache" in first.provenance()["decoding"]["how"]
    second = folder_data(root, cache)
    assert "read from the decoded cache" in second.provenance()["decoding"]["how"]
    assert torch.equal(first._train[0], second._train[0]) and torch.equal(first._test[1], second._test[1])
    # Same size, new bytes: a new fingerprint, hence a new entry (file dates are not trusted).
    victim = root / "train" / "dog" / "0100.png"
    Image.fromarray(np.full((12, 12), 7, dtype=np.uint8)).save(victim)
    third = folder_data(root, cache)
    assert "written to the decoded cache" in third.provenance()["decoding"]["how"]
    assert third.provenance()["train"]["sha256"] != first.provenance()["train"]["sha256"]
    assert len(list(cache.glob("*.npz"))) == 2


def test_the_fingerprint_is_the_sha256_of_the_sha256sum_manifest(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    record = folder_data(root, tmp_path / "cache", cache=False).provenance()
    for split in ("train", "test"):
        files = sorted(p.relative_to(root / split).as_posix() for p in (root / split).rglob("*.png"))
        manifest = "".join(f"{hashlib.sha256((root / split / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
        entry = record[split]
        assert entry["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
        assert entry["files"] == len(files) and entry["bytes"] == sum((root / split / f).stat().st_size for f in files)
    assert record["decoding"]["how"].endswith("(data.cache=false)")
    json.dumps(record)  # goes into metrics.json


def test_mixed_sizes_are_resized_to_data_image_size_and_jpeg_reads(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", suffix=".jpg", colour=True)
    Image.fromarray(np.zeros((20, 16, 3), dtype=np.uint8)).save(root / "train" / "cat" / "0099.jpg")
    dm = folder_data(root, tmp_path / "cache", image_size=[10, 14], channels=1)
    assert dm.input_shape == (1, 10, 14) and dm._train[0].shape[1:] == (10, 14)
    assert dm.provenance()["train"]["resized"] == 25 and dm.provenance()["test"]["resized"] == 9


def test_arrays_load_channels_first_with_their_class_names(tmp_path: Path) -> None:
    dm = ArrayImageData(root=str(make_npz(tmp_path / "a.npz", shape=(8, 8, 3))), val_size=6)
    dm.setup("fit")
    dm.setup("test")
    assert dm.class_names == list(CLASSES) and dm.input_shape == (3, 8, 8) and dm._test[0].shape == (9, 3, 8, 8)
    record = dm.provenance()["arrays"]
    assert record["sha256"] == hashlib.sha256((tmp_path / "a.npz").read_bytes()).hexdigest()
    assert record["path"] == str((tmp_path / "a.npz").resolve())
    unnamed = ArrayImageData(root=str(make_npz(tmp_path / "b.npz", class_names=None)), val_size=6, image_size=16)
    unnamed.setup("fit")
    assert unnamed.class_names == ["0", "1", "2"] and unnamed._train[0].shape[1:] == (16, 16)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, naming the file, nothing half-written


def _fails(root: Path, cache: Path, match: str, **kw: object) -> str:
    with pytest.raises(DatasetError) as err:
        folder_data(root, cache, **kw)
    message = one_line(err)
    assert match in message, message
    assert not list(cache.glob("*")) if cache.exists() else True  # no cache entry from a failed load
    return message


def test_an_empty_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()
    assert "train/emu is empty" in _fails(root, tmp_path / "cache", "every class folder needs at least one image")


def test_a_class_missing_from_test(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    for f in (root / "test" / "owl").iterdir():
        f.unlink()
    (root / "test" / "owl").rmdir()
    _fails(root, tmp_path / "cache", "has no folder for class 'owl'")


def test_a_truncated_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    victim = root / "train" / "dog" / "0103.png"
    victim.write_bytes(victim.read_bytes()[:60])
    message = _fails(root, tmp_path / "cache", "corrupt or truncated image")
    assert str(victim) in message
    victim.write_bytes(b"")
    assert _fails(root, tmp_path / "cache", "corrupt or truncated image (the file is empty)").startswith(str(victim))


def test_a_corrupt_image_is_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    victim = root / "test" / "cat" / "0001.png"
    data = bytearray(victim.read_bytes())
    data[-30:-20] = bytes(10)  # inside the compressed pixels (before the IDAT CRC and IEND)
    victim.write_bytes(bytes(data))
    assert str(victim) in _fails(root, tmp_path / "cache", "corrupt or truncated image")
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))  # a PNG signature, then garbage
    assert str(victim) in _fails(root, tmp_path / "cache", "corrupt or truncated image")


def test_a_file_that_is_not_an_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    (root / "train" / "cat" / "notes.txt").write_text("not a picture")
    _fails(root, tmp_path / "cache", "notes.txt is not an image: data=folder reads .png, .jpg and .jpeg")
    (root / "train" / "cat" / "notes.txt").unlink()
    fake = root / "train" / "cat" / "fake.png"
    fake.write_text("not a picture either")
    assert str(fake) in _fails(root, tmp_path / "cache", "is not an image Pillow can read")
    fake.unlink()
    gif = io.BytesIO()
    Image.fromarray(np.zeros((12, 12), dtype=np.uint8)).save(gif, format="GIF")
    (root / "train" / "cat" / "a.png").write_bytes(gif.getvalue())
    _fails(root, tmp_path / "cache", "a.png is a GIF image; data=folder reads PNG and JPEG")


def test_mixed_sizes_without_data_image_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    Image.fromarray(np.zeros((14, 12), dtype=np.uint8)).save(root / "test" / "owl" / "0500.png")
    message = _fails(root, tmp_path / "cache", "images of mixed sizes need data.image_size")
    assert "0500.png is 12x14" in message


def test_a_colour_image_among_grey_ones(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    Image.fromarray(np.zeros((12, 12, 3), dtype=np.uint8)).save(root / "train" / "owl" / "0250.png")
    _fails(root, tmp_path / "cache", "0250.png is a colour image but the first image")


def test_a_dataset_too_large_for_memory_says_how_large_and_the_limit(tmp_path: Path) -> None:
    message = _fails(make_folder(tmp_path / "d"), tmp_path / "cache", "the decoded dataset is too large",
                     memory_limit_gb=1e-6)
    assert "33 images of 1x12x12 uint8" in message and "limit is" in message and "data.memory_limit_gb=1e-06" in message


@pytest.mark.parametrize(("override", "match"), [
    ({"y_train": np.array([0, 1, 3] * 10)}, "y_train holds label 3, out of range [0, 2]"),
    ({"y_test": -np.ones(9, dtype=np.int64)}, "y_test holds label -1"),
    ({"y_train": (np.arange(30) % 3).astype(np.float32)}, "y_train is float32, must be integer class labels"),
    ({"x_test": np.zeros((9, 8, 8), dtype=np.float64)}, "x_test is float64, must be uint8"),
    ({"y_test": None}, "lacks y_test"),
    ({"x_test": np.zeros((9, 9, 8), dtype=np.uint8)}, "x_train images are (8, 8, 1) (H, W, C) but x_test"),
    ({"y_train": np.arange(29) % 3}, "y_train has shape (29,), must be (30,)"),
    ({"y_test": np.array([0, 1] * 4 + [0])}, "class 2 ('owl') has no image in y_test"),
    ({"class_names": np.array([1, 2, 3])}, "class_names is int64"),
])
def test_bad_arrays(tmp_path: Path, override: dict, match: str) -> None:
    path = make_npz(tmp_path / "bad.npz", **override)
    with pytest.raises(DatasetError) as err:
        ArrayImageData(root=str(path), val_size=6).setup("fit")
    assert match in one_line(err) and str(path) in str(err.value)


def test_a_file_that_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError) as err:
        ArrayImageData(root=str(path), val_size=6)
    assert "is not a readable .npz file" in one_line(err)


# ----------------------------------------------------------------------------------------------
# The config: keys checked before training, the backbone told the data's shape by interpolation


def _config(*overrides: str, tmp_path: Path):  # noqa: ANN202 - a DictConfig
    cache = [f"data.cache_dir={tmp_path / 'cache'}"] if "data=folder" in overrides else []
    return compose_config([*TINY, *overrides, *cache], output_dir=tmp_path / "run")


def test_the_backbone_takes_channels_and_size_from_the_data(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", colour=True, size=(12, 16))
    cfg = _config("data=folder", f"data.root={root}", "data.val_size=6", tmp_path=tmp_path)
    check_config(cfg)
    assert cfg.backbone.in_channels == 3 and list(cfg.backbone.image_size) == [12, 16]
    resized = _config("data=folder", f"data.root={root}", "data.val_size=6", "data.image_size=8", "data.channels=1",
                      "backbone=resnet", tmp_path=tmp_path)
    assert resized.backbone.in_channels == 1
    fashion = compose_config(["data.root=/nonexistent/but/unread"])
    assert fashion.backbone.in_channels == 1 and fashion.backbone.image_size == 28
    backbone = instantiate(fashion.backbone)  # the reference CNN as before: 468,074 parameters with Dense(10)
    assert sum(p.numel() for p in backbone.parameters()) + 128 * 10 + 10 == 468_074


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a DictConfig
    """One composed data=folder config (composing takes most of a second); tests change copies."""
    tmp_path = tmp_path_factory.mktemp("folder_config")
    return _config("data=folder", f"data.root={make_folder(tmp_path / 'd')}", "data.val_size=6", tmp_path=tmp_path)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("channels", 2, "data.channels=2 is invalid: must be null (as the images are), 1 (grey) or 3 (colour)"),
    ("image_size", [3, 4, 5], "data.image_size=[3, 4, 5] is invalid"),
    ("image_size", 0, "data.image_size=0 is invalid"),
    ("val_size", 24, "data.val_size=24 is invalid: must be an integer in [1, 23]"),
    ("held_out_classes", [3], "class ids must be integers in [0, 2]"),
    ("memory_limit_gb", 0, "data.memory_limit_gb=0 is invalid"),
    ("cache", "maybe", "data.cache='maybe' is invalid: must be true or false"),
    ("cache_dir", 5, "data.cache_dir=5 is invalid"),
    ("crop_padding", 12, "data.crop_padding=12 is invalid"),
    ("format", "tfrecord", "data.format='tfrecord' is invalid: must be one of idx, folder, arrays"),
])
def test_bad_folder_options_are_caught_before_training(folder_config, key: str, value: object, match: str) -> None:
    cfg = folder_config.copy()
    OmegaConf.update(cfg, f"data.{key}", value, force_add=True)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert match in one_line(err)


def test_bad_data_is_one_line_before_training_too(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d")
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()
    with pytest.raises(DatasetError) as err:
        check_config(_config("data=folder", f"data.root={root}", tmp_path=tmp_path))
    assert one_line(err).endswith("train/emu is empty: every class folder needs at least one image (remove the "
                                  "folder to drop the class)")
    with pytest.raises(ConfigError) as err:
        check_config(_config("data=arrays", f"data.root={tmp_path / 'missing.npz'}", tmp_path=tmp_path))
    assert "no such file; data=arrays needs the path of an .npz file" in one_line(err)


# ----------------------------------------------------------------------------------------------
# End to end: python -m src.train's pipeline on a colour folder


def test_training_on_a_colour_folder_records_its_fingerprint_and_class_names(tmp_path: Path) -> None:
    from src.training.pipeline import run

    root = make_folder(tmp_path / "d", colour=True, per_class=(12, 4))
    cfg = _config("data=folder", f"data.root={root}", "data.val_size=6", "trainer.max_epochs=1",
                  "data.held_out_classes=[2]", "logger=csv", "callbacks.embeddings=null", tmp_path=tmp_path)
    metrics = run(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "finished" and record["class_names"] == ["cat", "dog"]
    assert len(record["data_files"]["train"]["sha256"]) == 64 and record["data_files"]["test"]["files"] == 12
    assert record["data_files"]["decoding"]["images"] == "3x12x12 uint8"
    assert metrics["open_set"]["held_out_classes"] == [2]
    assert (tmp_path / "run" / "config_resolved.yaml").read_text().count("in_channels: 3") == 1


def test_resume_ignores_where_the_cache_is_and_the_memory_guard() -> None:
    from src.training.admission import config_differences

    old = {"data": {"cache": True, "cache_dir": "/a", "memory_limit_gb": None, "image_size": None}}
    new = {"data": {"cache": False, "cache_dir": "/b", "memory_limit_gb": 2.0, "image_size": 32}}
    assert config_differences(old, new) == ["data.image_size: None -> 32"]
