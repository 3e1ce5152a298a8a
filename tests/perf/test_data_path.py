"""The data path has no waste: batches are cut on the device that holds the dataset, no
DataLoader (no workers, no per-sample collation), and a training step makes no host sync."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from src.data.batches import InMemoryBatches
from src.data.datamodule import ImageClassificationData
from src.training.pipeline import build

# Tensor methods that copy a device value to the host (a sync on CUDA), plus torch.unique whose
# output size is data-dependent (also a sync on CUDA).
SYNC_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


def test_datamodule_serves_in_memory_batches_not_a_dataloader(synthetic_root: Path) -> None:
    dm = ImageClassificationData(root=str(synthetic_root), download=False, val_size=100, batch_size=32)
    dm.setup("fit")
    for batches in (dm.train_dataloader(), dm.val_dataloader()):
        assert isinstance(batches, InMemoryBatches) and not isinstance(batches, DataLoader)
        x, y = next(iter(batches))
        assert x.dtype == torch.float32 and y.dtype == torch.int64


def test_setup_puts_the_dataset_on_the_trainer_device_and_batches_are_cut_there(synthetic_root: Path) -> None:
    """The CUDA path, exercised on the 'meta' device: whatever device the trainer runs on holds the
    whole dataset after setup(), and every batch is gathered and scaled there (no host copy)."""
    dm = ImageClassificationData(root=str(synthetic_root), download=False, val_size=100, batch_size=32)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")), current_epoch=0)
    dm.setup("fit")
    assert dm._train[0].device.type == "meta" and dm._val[1].device.type == "meta"
    assert dm._train[0].dtype == torch.uint8  # stored as bytes: 47 MB for all of Fashion-MNIST
    for batches in (dm.train_dataloader(), dm.val_dataloader()):
        x, y = next(iter(batches))
        assert x.device.type == "meta" and y.device.type == "meta" and x.shape[1:] == (1, 28, 28)


def test_augmented_batches_keep_shape_dtype_and_memory_format() -> None:
    images, labels = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8), torch.arange(40) % 10
    batches = InMemoryBatches(images, labels, 16, shuffle=True, hflip=True, crop_padding=2, channels_last=True)
    sizes = []
    for x, y in batches:
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
        assert x.shape[1:] == (1, 28, 28) and len(y) == len(x)
        sizes.append(len(y))
    assert sizes == [16, 16, 8]
    first = [x for x, _ in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in batches], strict=True))  # seeded


def test_erasing_touches_training_batches_only_and_leaves_the_other_streams_alone() -> None:
    images, labels = torch.randint(1, 256, (64, 28, 28), dtype=torch.uint8), torch.arange(64) % 10

    def batches(shuffle: bool, erase: float) -> list[torch.Tensor]:
        kw = dict(shuffle=shuffle, hflip=True, crop_padding=2, mean=0.0, std=1.0)
        return [x for x, _ in InMemoryBatches(images, labels, 64, erase_prob=erase, **kw)]

    plain, erased = batches(True, 0.0)[0], batches(True, 1.0)[0]
    changed = erased != plain
    assert bool((erased[changed] == 0).all())  # an erased patch holds the mean, 0 after normalising
    assert bool(changed.flatten(1).any(1).all())  # p = 1: every image lost a patch of non-zero pixels
    # erasing draws after flips and crops, so what changed is one patch, not a different flip or crop
    rows, cols = changed[:, 0].any(2).sum(1), changed[:, 0].any(1).sum(1)
    assert bool((changed.flatten(1).sum(1) <= rows * cols).all()) and bool((rows * cols <= 0.4 * 784 + 57).all())
    assert torch.equal(batches(False, 1.0)[0], batches(False, 0.0)[0])  # evaluation is never erased


def _count_syncs(monkeypatch: pytest.MonkeyPatch, counts: Counter) -> None:
    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):  # noqa: ANN001
            if counts.get("_on"):
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    unique = torch.unique

    def counting_unique(*args, **kwargs):  # noqa: ANN002, ANN003
        if counts.get("_on"):
            counts["torch.unique"] += 1
        return unique(*args, **kwargs)

    monkeypatch.setattr(torch, "unique", counting_unique)


def _fit_and_count(tiny_config, monkeypatch: pytest.MonkeyPatch, steps: int) -> Counter:
    """Sync-like calls made during a fit of ``steps`` steps with the real callbacks and logger
    (progress bar off, as in background runs), NonFiniteGuard included: it checks each loss on the
    device and reads the verdict every ``check_loss_every_n_steps`` (default 50) steps. SGD, because Adam and AdamW
    read their step counters with ``.item()`` per parameter (CPU tensors unless capturable=True,
    so no GPU sync, but they would hide one here)."""
    cfg = tiny_config("trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=0",
                      "trainer.log_every_n_steps=1000", "optimizer=sgd",
                      # Logging points are syncs by design; keep them out of the count (the adaptive
                      # interval would add one per few steps on these 2- and 6-batch epochs).
                      "callbacks.log_frequency=null")
    datamodule, model = build(cfg)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[instantiate(c) for c in cfg.logger.values()])
    counts: Counter = Counter()
    _count_syncs(monkeypatch, counts)
    counts["_on"] = 1
    try:
        trainer.fit(model, datamodule=datamodule)
    finally:
        counts["_on"] = 0
        monkeypatch.undo()
    del counts["_on"]
    return counts


def test_a_training_step_makes_no_host_sync(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-step logging and metrics stay on the device: a fit of 6 steps makes exactly as many
    sync-like calls as a fit of 2 (what remains is once per fit or per epoch)."""
    short = _fit_and_count(tiny_config, monkeypatch, 2)
    long = _fit_and_count(tiny_config, monkeypatch, 6)
    per_step = {k: (long[k] - short[k]) / 4 for k in set(long) | set(short) if long[k] != short[k]}
    assert not per_step, f"calls per training step that would sync a GPU: {per_step}"
