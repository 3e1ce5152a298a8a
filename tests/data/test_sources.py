from __future__ import annotations

import gzip
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.idx import read_idx, write_idx
from src.data.sources import (
    DATASETS,
    FILENAMES,
    DatasetError,
    get_spec,
    load_split,
    locate,
)
from tests.synthetic import make_synthetic_dataset

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _copy(files: dict[str, Path], folder: Path, raw: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in files.values():
        if raw:
            (folder / p.name.removesuffix(".gz")).write_bytes(gzip.decompress(p.read_bytes()))
        else:
            shutil.copy(p, folder / p.name)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- registry -----------------------------------------------------------------------------------


def test_registry() -> None:
    fm, mn = DATASETS["fashion_mnist"], DATASETS["mnist"]
    assert fm.class_names[0] == "T-shirt/top" and fm.class_names[-1] == "Ankle boot"
    assert fm.num_classes == 10 and mn.class_names == tuple(str(i) for i in range(10))
    for spec in (fm, mn):
        assert (spec.num_train, spec.num_test) == (60000, 10000)
        assert {fs.filename for fs in spec.files.values()} == set(FILENAMES.values())
        assert spec.files["train_images"].size == 47040016
        assert spec.files["test_labels"].size == 10008
        assert all(fs.md5_gz and len(fs.md5_gz) == 32 for fs in spec.files.values())
    assert all(fs.sha256 and len(fs.sha256) == 64 for fs in fm.files.values())
    assert all(fs.sha256 is None for fs in mn.files.values())
    assert fm.system_dirs == (SYSTEM_FASHION,) and fm.apt_package == "dataset-fashion-mnist"
    assert get_spec("fashion-mnist") is fm and get_spec("MNIST") is mn
    with pytest.raises(DatasetError, match="unknown dataset"):
        get_spec("cifar10")


# --- synthetic data -----------------------------------------------------------------------------


def test_synthetic_dataset_is_learnable(tmp_path: Path) -> None:
    files = make_synthetic_dataset(tmp_path, n_train=200, n_test=100, seed=3)
    assert set(files) == set(FILENAMES)
    x, y = read_idx(files["train_images"]), read_idx(files["train_labels"])
    xt, yt = read_idx(files["test_images"]), read_idx(files["test_labels"])
    assert x.shape == (200, 28, 28) and x.dtype == torch.uint8 and y.shape == (200,)
    assert torch.bincount(y.long()).tolist() == [20] * 10
    # Nearest class centroid already separates the classes, so a tiny CNN will too.
    centroids = torch.stack([x[y == c].float().mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(xt.float().flatten(1), centroids).argmin(1)
    assert (pred == yt.long()).float().mean() > 0.9
    again = make_synthetic_dataset(tmp_path / "again", n_train=200, n_test=100, seed=3)
    assert again["train_images"].read_bytes() == files["train_images"].read_bytes()


def test_synthetic_other_sizes(tmp_path: Path) -> None:
    files = make_synthetic_dataset(tmp_path, n_train=12, n_test=6, num_classes=3, image_size=16)
    assert read_idx(files["test_images"]).shape == (6, 16, 16)
    assert read_idx(files["train_labels"]).max() == 2


# --- locate -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", "fashion_mnist", "fashion-mnist"])
def test_locate_in_root(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path, sub: str) -> None:
    root = tmp_path / "root"
    folder = _copy(synth, root / sub if sub else root)
    found = locate("fashion_mnist", root, download=False)
    assert found == {k: folder / FILENAMES[k] for k in FILENAMES}


def test_locate_raw_files(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root", raw=True)
    found = locate("fashion_mnist", root, download=False)
    assert found["train_labels"] == root / "train-labels-idx1-ubyte"
    images, labels = load_split("fashion_mnist", root, "train", download=False)
    assert torch.equal(images, read_idx(synth["train_images"]))


def test_root_preferred_over_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "system"
    make_synthetic_dataset(system, n_train=30, n_test=10)
    spec = DATASETS["fashion_mnist"]
    monkeypatch.setitem(DATASETS, "fashion_mnist", replace(spec, system_dirs=(system,)))
    root = tmp_path / "root"
    root.mkdir()
    # Nothing in root: the system folder is used.
    assert locate("fashion_mnist", root, download=False)["test_images"].parent == system
    assert load_split("fashion_mnist", None, "test", download=False)[0].shape == (10, 28, 28)
    # Once root has the files, root wins.
    make_synthetic_dataset(root, n_train=20, n_test=5)
    assert locate("fashion_mnist", root, download=False)["test_images"].parent == root
    assert load_split("fashion_mnist", root, "test", download=False)[1].shape == (5,)


def test_missing_everywhere_lists_folders_and_fix(tmp_path: Path, no_system_dirs: Path) -> None:
    root = tmp_path / "root"
    partial = root / "fashion-mnist"
    partial.mkdir(parents=True)
    write_idx(partial / FILENAMES["train_labels"], np.zeros(5, dtype=np.uint8))
    with pytest.raises(DatasetError) as exc:
        locate("fashion_mnist", root, download=False)
    msg = str(exc.value)
    assert "\n" not in msg
    for folder in (root, root / "fashion_mnist", partial, no_system_dirs):
        assert str(folder) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download is disabled" in msg and "download=True" in msg
    assert "only 1 of 4 files" in msg
    assert "train-images-idx3-ubyte.gz" in msg


def test_missing_without_root(no_system_dirs: Path) -> None:
    with pytest.raises(DatasetError, match="no data root is configured"):
        locate("mnist", None, download=True)


def test_truncated_file_in_root(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root", raw=True)
    bad = root / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated") as exc:
        locate("fashion_mnist", root, download=False, verify=False)
    assert str(bad) in str(exc.value)


def test_wrong_kind_of_file(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root")
    shutil.copy(synth["test_labels"], root / FILENAMES["test_images"])
    with pytest.raises(DatasetError, match="3 dims for test_images"):
        locate("fashion_mnist", root, download=False)


def test_checksum_mismatch_on_upstream_sized_file(
    tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path
) -> None:
    root = _copy(synth, tmp_path / "root")
    # 60000 labels: the size of the real train-labels file, but not its content.
    fake = write_idx(root / FILENAMES["train_labels"], (np.arange(60000) % 7).astype(np.uint8))
    with pytest.raises(DatasetError) as exc:
        locate("fashion_mnist", root, download=False)
    msg = str(exc.value)
    expected = DATASETS["fashion_mnist"].files["train_labels"].sha256
    assert str(fake) in msg and expected in msg and "got " in msg
    assert "delete it and re-download" in msg and "\n" not in msg
    # verify=False keeps the structural checks only.
    assert locate("fashion_mnist", root, download=False, verify=False)["train_labels"] == fake


def test_load_split(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root")
    images, labels = load_split("fashion_mnist", root, "train", download=False)
    assert images.shape == (40, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (40,) and labels.dtype == torch.int64
    assert torch.equal(labels, read_idx(synth["train_labels"]).long())
    with pytest.raises(ValueError, match="split"):
        load_split("fashion_mnist", root, "val", download=False)


def test_load_split_count_mismatch(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root")
    write_idx(root / FILENAMES["test_labels"], np.zeros(19, dtype=np.uint8))
    with pytest.raises(DatasetError, match="20 images .* but 19 labels"):
        load_split("fashion_mnist", root, "test", download=False)


def test_load_split_label_out_of_range(tmp_path: Path, synth: dict[str, Path], no_system_dirs: Path) -> None:
    root = _copy(synth, tmp_path / "root")
    write_idx(root / FILENAMES["test_labels"], np.full(20, 12, dtype=np.uint8))
    with pytest.raises(DatasetError, match="label 12 out of range"):
        load_split("fashion_mnist", root, "test", download=False)


# --- download (local HTTP server) ---------------------------------------------------------------


def _serve(
    routes: dict, prefix: str, files: dict[str, Path], mode: str = "ok", body: bytes | None = None
) -> None:
    for p in files.values():
        routes[f"/{prefix}/{p.name}"] = (mode, p.read_bytes() if body is None else body)


def test_download_good(tmp_path: Path, synth: dict[str, Path], make_spec, http_server) -> None:
    base, routes = http_server
    _serve(routes, "good", synth)
    spec = make_spec(synth)
    root = tmp_path / "root"
    found = locate(spec, root, mirrors=[f"{base}/good/"])
    assert found == {k: root / "tiny" / FILENAMES[k] for k in FILENAMES}
    for key, p in found.items():
        assert p.read_bytes() == synth[key].read_bytes()
    assert _leftovers(root) == sorted(FILENAMES.values())  # no .part files
    # A second call finds them in root/<name> and needs no server.
    routes.clear()
    assert locate(spec, root, mirrors=[f"{base}/good/"]) == found


def test_download_falls_back_to_next_mirror(
    tmp_path: Path, synth: dict[str, Path], make_spec, http_server
) -> None:
    base, routes = http_server
    _serve(routes, "good", synth)
    root = tmp_path / "root"
    found = locate(make_spec(synth), root, mirrors=[f"{base}/missing/", f"{base}/good"])
    assert found["test_labels"].read_bytes() == synth["test_labels"].read_bytes()


def test_download_corrupt_rejected(tmp_path: Path, synth: dict[str, Path], make_spec, http_server) -> None:
    base, routes = http_server
    # Well-formed IDX files of the right sizes, but different content: only the checksum catches it.
    other = make_synthetic_dataset(tmp_path / "other", n_train=40, n_test=20, seed=99)
    _serve(routes, "bad", other)
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as exc:
        locate(make_spec(synth), root, mirrors=[f"{base}/bad/"])
    msg = str(exc.value)
    assert f"{base}/bad/train-images-idx3-ubyte.gz" in msg and "checksum mismatch" in msg
    assert _leftovers(root) == []


def test_download_garbage_rejected_even_without_verify(
    tmp_path: Path, synth: dict[str, Path], make_spec, http_server
) -> None:
    base, routes = http_server
    _serve(routes, "html", synth, body=b"<html>not found</html>")
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="bad IDX magic"):
        locate(make_spec(synth), root, verify=False, mirrors=[f"{base}/html/"])
    assert _leftovers(root) == []


def test_download_interrupted_then_retried(
    tmp_path: Path, synth: dict[str, Path], make_spec, http_server
) -> None:
    base, routes = http_server
    _serve(routes, "cut", synth, mode="short")
    spec = make_spec(synth)
    root = tmp_path / "root"
    with pytest.raises(DatasetError) as exc:
        locate(spec, root, mirrors=[f"{base}/cut/"])
    msg = str(exc.value)
    assert f"{base}/cut/train-images-idx3-ubyte.gz" in msg and "incomplete transfer" in msg
    assert _leftovers(root) == []
    _serve(routes, "good", synth)
    found = locate(spec, root, mirrors=[f"{base}/good/"])
    assert torch.equal(read_idx(found["train_images"]), read_idx(synth["train_images"]))
    assert _leftovers(root) == sorted(FILENAMES.values())


def test_download_disabled_makes_no_request(
    tmp_path: Path, synth: dict[str, Path], make_spec, http_server
) -> None:
    base, routes = http_server
    _serve(routes, "good", synth)
    with pytest.raises(DatasetError, match="download is disabled"):
        locate(make_spec(synth), tmp_path / "root", download=False, mirrors=[f"{base}/good/"])
    assert not (tmp_path / "root").exists()


# --- the real files, where Debian's package is installed -----------------------------------------


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist(tmp_path: Path) -> None:
    found = locate("fashion_mnist", tmp_path, download=False)  # empty root: the system folder, verified
    assert found["train_labels"].parent == SYSTEM_FASHION
    labels = read_idx(found["train_labels"])
    assert labels.shape == (60000,) and labels.dtype == torch.uint8
    assert torch.bincount(labels.long()).tolist() == [6000] * 10
