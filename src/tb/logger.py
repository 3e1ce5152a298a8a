"""Lightning's TensorBoardLogger with this project's tags and layout.

- Event files go straight into the run folder, so TensorBoard names a sweep's runs by their job
  folders (``0_loss.m=2``), not ``0_loss.m=2/tb``.
- Lightning's own ``epoch`` scalar is dropped (every chart already has steps; it only pushed the
  useful charts down in Time Series).
- ``LearningRateMonitor``'s ``lr-<OptimizerClass>`` becomes ``train/lr``, one tag whatever the
  optimiser, so runs with different optimisers share a chart.
- Each head's loss (``train/loss`` per step, ``train/loss_epoch``, ``val/loss`` as the module logs
  them) is written under ``loss_own_scale/`` (``LOSS_TAGS``): it is that configuration's own
  objective on its own scale (ArcFace's floor is set by its s and m, softmax's is near 0), so the
  tag says it is not to be compared across heads or margins, and the ``train/`` and ``val/`` groups
  hold only what every run measures the same way (accuracies, the learning rate).
- ``val/acc_best``: the best validation accuracy so far, logged beside each ``val/acc``; its last
  value is the run's ``val_acc_best`` (the checkpoint-selection score), which HParams shows.
- No per-run HParams *experiment* record and no ``hparams.yaml``: Lightning writes both from
  ``log_hyperparams``, and TensorBoard shows only the first experiment record it finds, hiding the
  keys of every other run. The run's typed hyper-parameters are written by ``src.tb.final`` and the
  sweep's one experiment by ``src.tb.experiment``; the run folder's resolved config holds the full config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

# lr-AdamW, lr-SGD/pg1, lr-Adadelta-momentum, lr-AdamW-1 (a second optimiser) ...
_LR_TAG = re.compile(r"^lr-[A-Za-z0-9_.]+?(?P<index>-\d+)?(?P<momentum>-momentum)?(?P<group>/pg\d+)?$")


# The per-head losses, as the module logs them -> as the loggers write them (see the module docstring).
LOSS_TAGS = {"train/loss": "loss_own_scale/train", "train/loss_epoch": "loss_own_scale/train_epoch",
             "val/loss": "loss_own_scale/val"}


def stable_tag(tag: str) -> str | None:
    """The tag a Lightning metric is written under (None: not written)."""
    if tag == "epoch":
        return None
    if tag in LOSS_TAGS:
        return LOSS_TAGS[tag]
    match = _LR_TAG.match(tag)
    if match is None:
        return tag
    name = "momentum" if match["momentum"] else "lr"
    return f"train/{name}{match['index'] or ''}{match['group'] or ''}"


class StableTags:
    """Mixin for any Lightning logger: the tags above (``train/lr``, ``loss_own_scale/*``, no
    ``epoch``, ``val/acc_best``), so TensorBoard, CSV and MLflow hold the same metric names."""

    val_acc_best = -math.inf

    def _stable(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        renamed = {new: value for tag, value in metrics.items() if (new := stable_tag(tag)) is not None}
        if "val/acc" in renamed:
            value = float(renamed["val/acc"])
            if math.isfinite(value):  # a NaN must not hide the real best
                self.val_acc_best = max(self.val_acc_best, value)
            if math.isfinite(self.val_acc_best):
                renamed["val/acc_best"] = self.val_acc_best
        return renamed

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        renamed = self._stable(metrics)
        if renamed:
            super().log_metrics(renamed, step)  # type: ignore[misc]


class RunCSVLogger(StableTags, CSVLogger):
    """CSVLogger with the project's metric names (``csv/metrics.csv``, ``csv/hparams.yaml``)."""


class RunMLFlowLogger(StableTags, MLFlowLogger):
    """MLFlowLogger with the project's metric names."""


class RunTensorBoardLogger(StableTags, TensorBoardLogger):
    """See the module docstring. ``save_dir`` is the run folder; ``name`` and ``version`` are empty."""

    def __init__(self, save_dir: str, name: str | None = "", version: int | str | None = "", **kwargs: Any) -> None:
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir, name=name, version=version, **kwargs)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        """Ignored on purpose (see the module docstring): src.tb.final writes the run's hparams."""

    @rank_zero_only
    def save(self) -> None:
        self.experiment.flush()  # no hparams.yaml: the resolved config beside it has the config
