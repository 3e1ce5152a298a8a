from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.data.batches import InMemoryBatches
from src.data.datamodule import ImageClassificationData


def make(root: Path, **kw) -> ImageClassificationData:
    dm = ImageClassificationData(root=str(root), download=False, val_size=100, **kw)
    dm.setup("fit")
    dm.setup("test")
    return dm


def test_split_is_disjoint_sized_and_fixed_by_split_seed(synthetic_root: Path) -> None:
    a, b = make(synthetic_root), make(synthetic_root, seed=5)
    assert len(a._val[1]) == 100 and len(a._train[1]) == 300
    # The training seed does not move the validation split; the split seed does.
    assert torch.equal(a._val[0], b._val[0])
    c = make(synthetic_root, split_seed=1)
    assert not torch.equal(a._val[0], c._val[0])
    train_rows = {row.numpy().tobytes() for row in a._train[0]}
    assert not any(row.numpy().tobytes() in train_rows for row in a._val[0])


def test_test_split_is_separate(synthetic_root: Path) -> None:
    dm = make(synthetic_root)
    assert len(dm._test[1]) == 120


def test_eval_batches_cover_each_image_once(synthetic_root: Path) -> None:
    dm = make(synthetic_root, eval_batch_size=7)
    seen = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(seen, dm._test[1])
    assert len(dm.test_dataloader()) == -(-120 // 7)


def test_train_batches_are_normalised_shuffled_and_reproducible(synthetic_root: Path) -> None:
    dm = make(synthetic_root, batch_size=50)
    first = [y for _, y in dm.train_dataloader()]
    again = [y for _, y in dm.train_dataloader()]
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert sorted(torch.cat(first).tolist()) == sorted(dm._train[1].tolist())
    assert not torch.equal(torch.cat(first), dm._train[1])
    x, _ = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (50, 1, 28, 28)
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3


def test_epochs_reshuffle(synthetic_root: Path) -> None:
    images, labels = torch.zeros(20, 28, 28, dtype=torch.uint8), torch.arange(20)
    epoch = {"n": 0}
    batches = InMemoryBatches(images, labels, 20, shuffle=True, epoch_fn=lambda: epoch["n"])
    e0 = next(iter(batches))[1]
    epoch["n"] = 1
    assert not torch.equal(e0, next(iter(batches))[1])


def test_held_out_classes_leave_training_and_are_renumbered(synthetic_root: Path) -> None:
    dm = make(synthetic_root, held_out_classes=[3, 7])
    assert dm.num_classes == 8 and "Dress" not in dm.class_names and "Sneaker" not in dm.class_names
    for split in (dm._train, dm._val, dm._test):
        assert split[1].max() == 7 and split[1].min() == 0
    images, labels = dm.open_set_test
    assert set(labels.tolist()) == {3, 7}


def test_val_size_out_of_range_is_a_clear_error(synthetic_root: Path) -> None:
    dm = ImageClassificationData(root=str(synthetic_root), download=False, val_size=400)
    with pytest.raises(ValueError, match="data.val_size=400"):
        dm.setup("fit")


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="fashion_mnist, mnist"):
        ImageClassificationData(name="cifar")
