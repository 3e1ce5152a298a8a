"""Issue #10.9: a data folder the user names is used alone (a missing one is an error unless
``data.fallback=true``), the four files always come from one folder, and the run record can say
which files they were (path, sha256 of the bytes, which checksum they passed)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from src.data.datamodule import ImageClassificationData
from src.data.sources import DATASETS, FILENAMES
from src.errors import DatasetError
from tests.synthetic import make_synthetic_dataset


@pytest.fixture
def system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A complete (synthetic) 'system' copy standing in for /usr/share/datasets/fashion-mnist."""
    system = tmp_path / "system"
    make_synthetic_dataset(system, n_train=40, n_test=10, seed=1)
    monkeypatch.setitem(DATASETS, "fashion_mnist", replace(DATASETS["fashion_mnist"], system_dirs=(system,)))
    return system


def _data(root: Path | None, **kwargs: object) -> ImageClassificationData:
    return ImageClassificationData(root=None if root is None else str(root), download=False, val_size=10, **kwargs)


def test_a_missing_root_is_an_error_unless_the_fallback_is_asked_for(tmp_path: Path, system_copy: Path) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(DatasetError) as info:
        _data(missing).files()
    message = str(info.value)
    assert "\n" not in message and f"data.root={str(missing)!r}" in message and "data.fallback=true" in message
    assert not missing.exists()  # nothing created at a typo
    assert {p.parent for p in _data(missing, fallback=True).files().values()} == {system_copy}


def test_a_private_root_missing_one_file_never_mixes_folders(tmp_path: Path, system_copy: Path) -> None:
    private = tmp_path / "private"
    make_synthetic_dataset(private, n_train=30, n_test=10, seed=2)
    (private / FILENAMES["test_labels"]).unlink()
    with pytest.raises(DatasetError) as info:  # the named folder alone: it says what is missing
        _data(private).files()
    assert "missing test_labels" in str(info.value) and str(system_copy) not in str(info.value).split("To fix")[0]
    # With the fallback the four files come from the one folder that has them all, never 3 + 1.
    assert {p.parent for p in _data(private, fallback=True).files().values()} == {system_copy}
    shutil.copy(system_copy / FILENAMES["test_labels"], private)  # complete again: the named folder wins
    assert {p.parent for p in _data(private, fallback=True).files().values()} == {private}


def test_no_root_is_the_automatic_search(tmp_path: Path, system_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here: the system copy, as `make train` on a fresh clone
    assert {p.parent for p in _data(None).files().values()} == {system_copy}
    make_synthetic_dataset(tmp_path / "data", n_train=30, n_test=10, seed=3)
    assert {p.parent.resolve() for p in _data(None).files().values()} == {(tmp_path / "data").resolve()}


def test_provenance_names_each_file_and_its_sha256(tmp_path: Path, system_copy: Path) -> None:
    data = _data(system_copy)
    data.setup("fit")
    provenance = data.provenance()
    assert set(provenance) == set(FILENAMES)
    for key, entry in provenance.items():
        path = Path(entry["path"])
        assert path == (system_copy / FILENAMES[key]).resolve()
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["verified"].startswith("structure only")  # synthetic files are not upstream's


def test_runs_from_before_the_key_keep_their_search_when_evaluated(tmp_path: Path) -> None:
    """src.evaluate rebuilds a run's data from its config_resolved.yaml; a run made before
    data.fallback existed named root "data" and was found in the system folder, so it still is."""
    from src.training.evaluation import load_config

    old, new = tmp_path / "old", tmp_path / "new"
    for folder, data in ((old, "root: data"), (new, "root: data\n  fallback: false")):
        folder.mkdir()
        (folder / "config_resolved.yaml").write_text(f"data:\n  name: fashion_mnist\n  {data}\n")
    assert load_config(old).data.fallback is True
    assert load_config(new).data.fallback is False
