"""LightningDataModule for Fashion-MNIST and MNIST held entirely as tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch

from src.config.checks import fail
from src.data.batches import InMemoryBatches
from src.data.sources import DATASETS, dataset_spec, describe_files, locate, read_split
from src.errors import DatasetError

# With no data.root: looked in first and downloaded into (after the dataset's system folders).
DEFAULT_ROOT = "data"


def data_roots(name: str, root: str | None, fallback: bool) -> tuple[Path, bool]:
    """(the folder searched first and downloaded into, whether the system folders may be used).

    ``root=None`` is the automatic search: ./data, then e.g. Debian's /usr/share/datasets/fashion-mnist,
    then a download into ./data. A folder the user names is used alone unless ``fallback``: a typo
    must not silently train on other files."""
    if root is None:
        return Path(DEFAULT_ROOT), True
    folder = Path(root).expanduser()
    if not fallback and not folder.is_dir():
        system = ", ".join(str(d) for d in DATASETS[name].system_dirs)
        raise DatasetError(
            f"data.root={root!r} is not a folder; name an existing folder (the files are looked for and "
            "downloaded there), leave data.root out (null: ./data"
            + (f", then {system}" if system else "") + ", then a download)"
            + ", or add data.fallback=true to use the automatic search when this folder lacks the files"
        )
    return folder, fallback


class ImageClassificationData(pl.LightningDataModule):
    """Train/validation split carved from the training file with its own seed; the test file is
    read only for ``trainer.test``. Classes in ``held_out_classes`` are removed from training and
    validation (open-set study); their test images are kept apart in ``open_set_test``.

    Its options are checked before it is built (``src.training.validate.check_data``, from the config);
    only what needs the files (a local file smaller than the dataset) is checked when they are read."""

    def __init__(
        self,
        name: str = "fashion_mnist",
        root: str | None = None,
        download: bool = True,
        verify: bool = True,
        fallback: bool = False,
        val_size: int = 5000,
        split_seed: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        normalize: bool = True,
        hflip: bool = False,
        crop_padding: int = 0,
        erase_prob: float = 0.0,
        held_out_classes: Sequence[int] = (),
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.name, self.root, self.download, self.verify = name, root, download, verify
        self.fallback = bool(fallback)
        self._paths: dict[str, Path] | None = None
        self.val_size, self.split_seed = int(val_size), int(split_seed)
        self.train_subset, self.test_subset = train_subset, test_subset
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.normalize, self.hflip, self.crop_padding = normalize, hflip, int(crop_padding)
        self.erase_prob = float(erase_prob)
        self.held_out_classes = sorted(int(c) for c in held_out_classes)
        self.seed, self.channels_last = int(seed), channels_last
        # Every class of the dataset (held-out ones included: the open-set check names them).
        self.all_class_names = list(self._dataset_class_names())
        self.known_classes = [c for c in range(len(self.all_class_names)) if c not in self.held_out_classes]
        self.class_names = [self.all_class_names[c] for c in self.known_classes]
        self.mean, self.std = 0.0, 1.0
        self._train = self._val = self._test = None
        self.open_set_test: tuple[torch.Tensor, torch.Tensor] | None = None

    def _dataset_class_names(self) -> tuple[str, ...]:
        """The class names, label order (subclasses reading other formats take them from their files)."""
        return dataset_spec(self.name).class_names

    def _read(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images uint8 (N, H, W) or (N, C, H, W), labels int64 (N,))`` of ``split`` (train | test)."""
        return read_split(self.name, self.files(), split)

    def files(self) -> dict[str, Path]:
        """The four files, located (and verified) once: train and test always come from one folder."""
        if self._paths is None:
            folder, fallback = data_roots(self.name, self.root, self.fallback)
            self._paths = locate(self.name, folder, download=self.download, verify=self.verify, fallback=fallback)
        return self._paths

    def provenance(self) -> dict[str, dict[str, str]]:
        """For the run record: each file's path, the sha256 of its bytes and which checksum it passed."""
        return describe_files(self.name, self.files(), self.verify)

    @property
    def num_classes(self) -> int:
        return len(self.known_classes)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.strategy.root_device.type != "cpu":
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _keep_known(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop held-out classes and renumber the rest 0..K-1 (identity when none are held out)."""
        if not self.held_out_classes:
            return images, labels
        remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
        remap[torch.tensor(self.known_classes)] = torch.arange(len(self.known_classes))
        keep = remap[labels] >= 0
        return images[keep], remap[labels[keep]]

    def setup(self, stage: str | None = None) -> None:
        device = self._device()
        if stage in (None, "fit", "validate") and self._train is None:
            images, labels = self._read("train")
            images, labels = self._keep_known(images, labels)
            if not 0 < self.val_size < len(labels):
                fail("data.val_size", self.val_size, f"must be in [1, {len(labels) - 1}] for {len(labels)} training "
                     "images")  # a local file smaller than the dataset's upstream size: known only now
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            val_idx, train_idx = order[: self.val_size], order[self.val_size :]
            if self.train_subset:
                train_idx = train_idx[: int(self.train_subset)]
            train_images = images[train_idx]
            if self.normalize:  # statistics of the training part only
                scaled = train_images.float().div(255.0)
                self.mean, self.std = scaled.mean().item(), scaled.std().item()
            self._train = (train_images.to(device), labels[train_idx].to(device))
            self._val = (images[val_idx].to(device), labels[val_idx].to(device))
        if stage in (None, "test", "predict") and self._test is None:
            images, labels = self._read("test")
            if self.held_out_classes:
                held = torch.isin(labels, torch.tensor(self.held_out_classes))
                self.open_set_test = (images[held], labels[held])
            images, labels = self._keep_known(images, labels)
            if self.test_subset:
                images, labels = images[: int(self.test_subset)], labels[: int(self.test_subset)]
            self._test = (images.to(device), labels.to(device))

    def _batches(self, split: tuple[torch.Tensor, torch.Tensor], train: bool) -> InMemoryBatches:
        return InMemoryBatches(
            *split,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            epoch_fn=(lambda: self.trainer.current_epoch) if train and self.trainer else None,
            mean=self.mean,
            std=self.std,
            hflip=self.hflip and train,
            crop_padding=self.crop_padding if train else 0,
            erase_prob=self.erase_prob if train else 0.0,
            drop_last=False,
            channels_last=self.channels_last,
        )

    def train_dataloader(self) -> InMemoryBatches:
        return self._batches(self._train, train=True)

    def val_dataloader(self) -> InMemoryBatches:
        return self._batches(self._val, train=False)

    def test_dataloader(self) -> InMemoryBatches:
        return self._batches(self._test, train=False)

    def open_set_batches(self) -> InMemoryBatches | None:
        """Held-out-class test images (labels are their original class ids), normalised like the rest."""
        if self.open_set_test is None:
            return None
        images, labels = self.open_set_test
        return self._batches((images.to(self._device()), labels.to(self._device())), train=False)

    def state_dict(self) -> dict:
        # The normalisation statistics travel with checkpoints so a resumed or reloaded model sees
        # exactly the inputs it was trained on.
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state_dict: dict) -> None:
        self.mean, self.std = float(state_dict["mean"]), float(state_dict["std"])


